"""Time our `pgd` against torchattacks.PGD on the same small digits CNN, eps, steps, step size and batch.

    python benchmarks/attacks.py

Both run with a random start on one CPU thread, timed (process CPU time) back to back in alternating
order; the ratio is the median over the pairs.
The last line is `ratio: R` with R = torchattacks time / our time (R > 1: ours is faster).
The two do not do quite the same work: torchattacks returns the last iterate; ours ranks every iterate
and returns the best one per example (so its robust accuracy is lower or equal), which costs one more
forward pass per run, on the examples no iterate has fooled yet, and a few element-wise ops per step.
"""

import statistics
import time

import torch
import torchattacks
from sklearn.datasets import load_digits
from torch import nn

from fooled.attacks import pgd

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


def paired_times(theirs, ours):
    """CPU times of the two functions, run back to back REPEATS times in alternating order (one thread, so CPU
    time ~ wall time on an idle machine and far steadier on a shared one). This machine's speed drifts by
    +-15 % over seconds; each pair sees the same drift, so the median of the per-pair ratios is far steadier
    than the ratio of the two medians."""
    pairs = []
    for repeat in range(REPEATS + 1):
        t = {}
        for name, fn in ((("theirs", theirs), ("ours", ours)) if repeat % 2 else (("ours", ours), ("theirs", theirs))):
            start = time.process_time()
            fn()
            t[name] = time.process_time() - start
        if repeat:  # the first round is a warm-up
            pairs.append((t["theirs"], t["ours"]))
    return pairs


def main():
    torch.set_num_threads(1)  # one thread times more steadily on a shared machine
    torch.manual_seed(0)
    x, y = digits()
    model = train(small_cnn(), x[:1297], y[:1297])
    xb, yb = x[1297:][:BATCH], y[1297:][:BATCH]
    alpha = 2.5 * EPS / STEPS
    theirs = torchattacks.PGD(model, eps=EPS, alpha=alpha, steps=STEPS, random_start=True)
    generator = torch.Generator().manual_seed(0)

    def ours():
        return pgd(model, xb, yb, eps=EPS, steps=STEPS, step_size=alpha, random_start=True, generator=generator)

    def acc(x_adv):
        with torch.no_grad():
            return (model(x_adv).argmax(1) == yb).float().mean().item()

    print(f"clean accuracy {acc(xb):.3f}; robust accuracy at linf eps {EPS}: "
          f"torchattacks {acc(theirs(xb, yb)):.3f}, fooled {acc(ours()):.3f}")
    pairs = paired_times(lambda: theirs(xb, yb), ours)
    t_theirs, t_ours = (statistics.median(p[i] for p in pairs) for i in (0, 1))
    ratios = sorted(a / b for a, b in pairs)
    print(f"batch {len(xb)}, {STEPS} steps, {REPEATS} paired repeats, {torch.get_num_threads()} thread")
    print(f"torchattacks.PGD: {t_theirs * 1e3:.1f} ms (median)")
    print(f"fooled pgd:       {t_ours * 1e3:.1f} ms (median)")
    print(f"per-pair ratios: quartiles {ratios[len(ratios) // 4]:.3f} / {ratios[len(ratios) // 2]:.3f} / {ratios[3 * len(ratios) // 4]:.3f}")
    print(f"ratio: {statistics.median(ratios):.3f}")

if __name__ == "__main__":
    main()
