"""Time our `pgd` against torchattacks.PGD on the same small digits CNN, eps, steps, step size and batch.

    python benchmarks/attacks.py

All run with a random start on one CPU thread, timed (process CPU time) back to back in alternating
order; each ratio is the median over the rounds of torchattacks' time / ours in the same round.

Ours is timed in two modes, both on the same 20 gradient steps per example at most:
- default: ranks every iterate and returns per example the best one (successful first, then highest
  loss), which costs one more forward pass, on the examples no iterate has fooled, and a few
  element-wise ops per step; torchattacks returns the last iterate unranked.
- early_stop=True, what robust accuracy needs: an example leaves the batch at its first successful
  iterate. The others follow the same trajectory as in the default mode, so the success set (and the
  robust accuracy) is the default mode's, printed below; only the fooled examples' adversarials are
  shallower.
- worst case: `pgd_worst_case` as the study runs it, losses ("ce", "margin", "multitarget") with targets=3 and
  the same steps, against the same single torchattacks PGD. It runs up to 5 PGDs (ce on every image, then margin
  and 3 targeted runs on the images still correct), so it does several times the gradient steps; the line also
  prints the images x passes through the model of each, and the ratio per image-pass.
- worst case, its first loss only: `pgd_worst_case` with losses ("ce",), the run every image gets before the others
  attack the images it left correct. Its ratio bounds the worst case's from above: the other losses only add work.
- torchattacks worst case: the same strategy and the same losses built from torchattacks, `MultiAttack` of its PGD
  (cross-entropy), a margin (Carlini-Wagner loss) PGD and 3 margin PGDs targeted at each image's most likely wrong
  classes, all with the same steps and step size, each on the images the earlier ones left correct: the like-for-like
  peer of our worst case (ours ranks its targets by the first-order reachable margin, theirs by the clean logits).
The last lines are `ratio, worst case against torchattacks' MultiAttack of the same losses: R` (must be >= 1) and
`ratio: R` for early_stop=True, R = torchattacks time / ours (R > 1: ours is faster).
"""

import statistics
import time

import torch
import torchattacks
from sklearn.datasets import load_digits
from torch import nn

from fooled.attacks import PGDSettings, margin, pgd, pgd_worst_case

EPS, STEPS, BATCH, REPEATS = 0.1, 20, 256, 30


def digits():
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(data.target, dtype=torch.long)


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def train(model, x, y, epochs=8):
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(epochs):
        for i in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
    return model.eval()


class MarginPGD(torchattacks.PGD):
    """torchattacks' PGD with the margin (Carlini-Wagner) loss in place of cross-entropy: max_{j != y} z_j - z_y, or
    z_t - max_{j != t} z_j toward a target; its five-line step unchanged."""

    def forward(self, images, labels):
        images, labels = images.clone().detach().to(self.device), labels.clone().detach().to(self.device)
        towards = self.get_target_label(images, labels) if self.targeted else labels
        sign = -1.0 if self.targeted else 1.0  # targeted: raise z_t above every other class
        adv = images.clone().detach()
        if self.random_start:
            adv = torch.clamp(adv + torch.empty_like(adv).uniform_(-self.eps, self.eps), min=0, max=1).detach()
        for _ in range(self.steps):
            adv.requires_grad = True
            grad = torch.autograd.grad(sign * margin(self.get_logits(adv), towards).sum(), adv)[0]
            adv = adv.detach() + self.alpha * grad.sign()
            adv = torch.clamp(images + torch.clamp(adv - images, min=-self.eps, max=self.eps), min=0, max=1).detach()
        return adv


def _ranked_wrong(model, images, labels, rank):
    """Per image, its rank-th most likely wrong class under the model (rank 0: the most likely)."""
    with torch.no_grad():
        logits = model(images)
    logits[torch.arange(len(labels)), labels] = -torch.inf
    return logits.argsort(1, descending=True)[:, rank]


def round_times(fns):
    """CPU times of each function, run back to back REPEATS times, in reversed order every other round (one
    thread, so CPU time ~ wall time on an idle machine and far steadier on a shared one). This machine's speed
    drifts by +-15 % over seconds; the functions of one round see the same drift, so the median of the
    per-round ratios is far steadier than the ratio of two medians."""
    rounds = []
    for repeat in range(REPEATS + 1):
        t = {}
        for name in list(fns) if repeat % 2 else list(fns)[::-1]:
            start = time.process_time()
            fns[name]()
            t[name] = time.process_time() - start
        if repeat:  # the first round is a warm-up
            rounds.append(t)
    return rounds


def images_through(model, fn):
    """How many images (summed over calls) one call of fn passes forward through the model."""
    count = [0]
    handle = model.register_forward_pre_hook(lambda module, args: count.__setitem__(0, count[0] + len(args[0])))
    try:
        fn()
    finally:
        handle.remove()
    return count[0]


def ratio_line(rounds, ours):
    ratios = sorted(r["torchattacks"] / r[ours] for r in rounds)
    q = [ratios[len(ratios) * i // 4] for i in (1, 2, 3)]
    return statistics.median(ratios), f"quartiles {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}"


def main():
    torch.set_num_threads(1)  # one thread times more steadily on a shared machine
    torch.manual_seed(0)
    x, y = digits()
    model = train(small_cnn(), x[:1297], y[:1297])
    xb, yb = x[1297:][:BATCH], y[1297:][:BATCH]
    alpha = 2.5 * EPS / STEPS
    theirs = torchattacks.PGD(model, eps=EPS, alpha=alpha, steps=STEPS, random_start=True)

    def ours(**kwargs):  # the same random start in both modes, every call
        return lambda: pgd(model, xb, yb, eps=EPS, steps=STEPS, step_size=alpha,
                           generator=torch.Generator().manual_seed(0), **kwargs).x_adv

    def worst_case(losses=("ce", "margin", "multitarget")):
        settings = PGDSettings(steps=STEPS, step_size=alpha, losses=losses, targets=3)
        return lambda: pgd_worst_case(model, xb, yb, eps=EPS, settings=settings, generator=torch.Generator().manual_seed(0)).x_adv

    def targeted(rank):  # a margin PGD toward each image's rank-th most likely wrong class (by its clean logits)
        atk = MarginPGD(model, eps=EPS, alpha=alpha, steps=STEPS, random_start=True)
        atk.set_mode_targeted_by_function(lambda images, labels: _ranked_wrong(model, images, labels, rank), quiet=True)
        return atk

    their_margin = MarginPGD(model, eps=EPS, alpha=alpha, steps=STEPS, random_start=True)
    their_worst = torchattacks.MultiAttack([theirs, their_margin, *(targeted(rank) for rank in range(3))])
    fns = {"torchattacks": lambda: theirs(xb, yb), "ours": ours(), "ours, early_stop": ours(early_stop=True),
           "worst case": worst_case(), "first loss only": worst_case(("ce",)), "torchattacks worst case": lambda: their_worst(xb, yb)}

    def acc(x_adv):
        with torch.no_grad():
            return (model(x_adv).argmax(1) == yb).float().mean().item()

    print(f"clean accuracy {acc(xb):.3f}; robust accuracy at linf eps {EPS}: "
          + ", ".join(f"{name} {acc(fn()):.3f}" for name, fn in fns.items()))
    with torch.no_grad():
        fooled_by = [model(fns[name]()).argmax(1) != yb for name in ("ours", "ours, early_stop")]
    print(f"ours fools the same images in both modes: {torch.equal(*fooled_by)}")
    passes = {name: images_through(model, fns[name]) for name in ("torchattacks", "worst case")}
    rounds = round_times(fns)
    print(f"batch {len(xb)}, {STEPS} steps, {REPEATS} rounds, {torch.get_num_threads()} thread")
    for name in fns:
        print(f"{name + ':':18s}{statistics.median(r[name] for r in rounds) * 1e3:.1f} ms (median)")
    default, spread = ratio_line(rounds, "ours")
    print(f"ratio, default mode (best iterate ranked): {default:.3f} ({spread})")
    early, spread = ratio_line(rounds, "ours, early_stop")
    print(f"ratio, early_stop mode: {early:.3f} ({spread})")
    peer = [{"torchattacks": r["torchattacks worst case"], "worst case": r["worst case"]} for r in rounds]
    peer_ratio, peer_spread = ratio_line(peer, "worst case")
    print(f"ratio, worst case against torchattacks' MultiAttack of the same losses (PGD with cross-entropy, margin and 3 "
          f"targeted margins, each on the images the earlier left correct, as ours): {peer_ratio:.3f} ({peer_spread})")
    worst, spread = ratio_line(rounds, "worst case")
    work = passes["worst case"] / passes["torchattacks"]
    print(f"ratio, worst case (ce, margin, multitarget x3): {worst:.3f} ({spread}); it passes {work:.2f}x the images "
          f"through the model ({passes['worst case']} vs {passes['torchattacks']}), so per image-pass {worst * work:.3f}")
    first, spread = ratio_line(rounds, "first loss only")
    print(f"ratio, worst case's first loss only (ce on every image): {first:.3f} ({spread}); the worst case cannot beat this, "
          f"since its other losses only add runs on the images this one leaves correct")
    print(f"ratio, worst case against torchattacks' MultiAttack of the same losses: {peer_ratio:.3f}")
    print(f"ratio: {early:.3f}")


if __name__ == "__main__":
    main()
