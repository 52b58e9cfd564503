"""Time our `pgd` against torchattacks.PGD on the same small digits CNN, eps, steps, step size and batch.

    python benchmarks/attacks.py

Both run with a random start on one CPU thread; each is timed (process CPU time) over several
interleaved repeats and the median is kept.
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

EPS, STEPS, BATCH, REPEATS = 0.1, 20, 256, 15


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


def median_times(*fns):
    """Median CPU time of each function (one thread, so CPU time ~ wall time on an idle machine and
    far steadier on a shared one); repeats are interleaved so background load hits both alike."""
    times = [[] for _ in fns]
    for repeat in range(REPEATS + 1):
        for fn, ts in zip(fns, times):
            start = time.process_time()
            fn()
            if repeat:  # the first round is a warm-up
                ts.append(time.process_time() - start)
    return [statistics.median(ts) for ts in times]


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
    t_theirs, t_ours = median_times(lambda: theirs(xb, yb), ours)
    print(f"batch {len(xb)}, {STEPS} steps, median CPU time of {REPEATS}, {torch.get_num_threads()} thread")
    print(f"torchattacks.PGD: {t_theirs * 1e3:.1f} ms")
    print(f"fooled pgd:       {t_ours * 1e3:.1f} ms")
    print(f"ratio: {t_theirs / t_ours:.3f}")


if __name__ == "__main__":
    main()
