"""Helpers for the attack tests: a tiny MLP and its training loop, and the checks every attack must pass.

Kept out of conftest.py so test modules import them by a name no other test folder uses.
"""

import torch
from torch import nn

N_TRAIN = 1297  # of the 1797 scikit-learn digits; the remaining 500 are the test split


def make_mlp(seed=0, hidden=64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def train(model, x, y, epochs=150, lr=1e-2, seed=0):
    """Full-batch Adam; deterministic given the seed."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval()


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def snapshot(model):
    """Everything an attack must leave alone: parameters, buffers, .grad, requires_grad, modes."""
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
    )


def assert_unchanged(model, before):
    state, grads, requires_grad, modes = snapshot(model)
    assert state.keys() == before[0].keys()
    assert all(torch.equal(state[k], before[0][k]) for k in state)
    assert len(grads) == len(before[1])
    for g, g0 in zip(grads, before[1]):
        assert (g is None and g0 is None) or (g is not None and g0 is not None and torch.equal(g, g0))
    assert requires_grad == before[2]
    assert modes == before[3]


def assert_in_budget(x_adv, x, eps, norm="linf", tol=1e-5):
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert size.max() <= eps + tol
