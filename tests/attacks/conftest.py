"""Fixtures for the attack tests: a tiny classifier trained on scikit-learn's 8x8 digits in a second or two."""

import pytest
import torch
from attack_helpers import N_TRAIN, make_mlp, train
from sklearn.datasets import load_digits

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    """(x_train, y_train, x_test, y_test): images in [0, 1] of shape (N, 1, 8, 8)."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


@pytest.fixture(scope="session")
def trained(digits):
    x_train, y_train, _, _ = digits
    return train(make_mlp(), x_train, y_train)


@pytest.fixture
def model(trained):
    """The trained classifier in eval mode, restored after each test in case a test changes its mode."""
    yield trained
    trained.eval()


@pytest.fixture(scope="session")
def batch(digits):
    """200 test digits to attack."""
    _, _, x_test, y_test = digits
    return x_test[:200], y_test[:200]


@pytest.fixture(scope="session")
def gaussian_log_prob(digits):
    """log N(x; mu, diag(var)) fitted to the training pixels: a simple differentiable density."""
    x_train = digits[0].flatten(1)
    mu, var = x_train.mean(0), x_train.var(0) + 0.01

    def log_prob(x):
        z = (x.flatten(1) - mu) ** 2 / var
        return -0.5 * (z + var.log() + torch.log(torch.tensor(2 * torch.pi))).sum(1)

    return log_prob



@pytest.fixture(scope="session")
def tiny_flow(digits):
    """A 2-block FlowClassifier trained for a few epochs on the digits (a few seconds on one core), in eval mode."""
    from fooled.models.flow import FlowClassifier, FlowConfig

    x_train, y_train, _, _ = digits
    torch.manual_seed(0)
    flow = FlowClassifier((1, 8, 8), 10, 17, FlowConfig(blocks=2, hidden=32), seed=0)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    flow.train()
    for _ in range(6):
        for idx in torch.randperm(len(x_train)).split(64):
            opt.zero_grad()
            flow.training_loss(x_train[idx], y_train[idx]).backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    return flow.eval()


@pytest.fixture(scope="session")
def flow_detector(tiny_flow, digits):
    """(score, threshold) of the nll detector on the tiny flow, flagging 5% of clean training digits."""
    score = lambda x: -tiny_flow.log_prob(x)  # noqa: E731
    with torch.no_grad():
        threshold = score(digits[0][:500]).quantile(0.95).item()
    return score, threshold
