"""Checks shared by the tests of the flow-based generative classifiers."""

import torch


def assert_trains_and_samples(model, x, y, steps):
    """Adam on `training_loss` lowers it by more than 0.2 nats/dim, and samples of each class are images in [0, 1]."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    first = model.training_loss(x, y).item()
    for _ in range(steps):
        loss = model.training_loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert model.training_loss(x, y).item() < first - 0.2
    s = model.sample(torch.tensor([0, 1, 1]), torch.Generator().manual_seed(0))
    assert s.shape == (3, *x.shape[1:]) and s.min() >= 0 and s.max() <= 1
