"""Start a flow at the Gaussian classifier: fit it in closed form, then make it the flow's base (see `gaussian_base`)."""

from __future__ import annotations

import torch

from ..data import Split
from .baselines import GaussianClassifier
from .flow import FlowClassifier


def fit_base(model: torch.nn.Module, train: Split, val: Split) -> dict | None:
    """Before training: a flow with base "gaussian" starts at the Gaussian classifier fitted on `train` (returns its
    choices); any other model is left as built (None)."""
    if isinstance(model, FlowClassifier) and model.cfg.base == "gaussian":
        return start_at_gaussian(model, train, val)
    return None


@torch.no_grad()
def start_at_gaussian(flow, train: Split, val: Split) -> dict:
    """Fit the Gaussian classifier in the flow's logit space and make it the base of the (untrained) flow.

    Returns what `GaussianClassifier.fit_data` chose (covariance, shrinkage, validation bits/dim and accuracy).
    The flow must be as built: couplings at the identity and ActNorms not yet initialised on data.
    """
    device = flow.base.means.device
    gaussian = GaussianClassifier(flow.shape, flow.num_classes, flow.levels, alpha=flow.cfg.alpha, seed=flow.seed).to(device)
    chosen = gaussian.fit_data(train, val)
    for layer in flow.flows:
        if hasattr(layer, "data_dep_init_done"):  # ActNorm: identity, not standardised on the first batch
            layer.data_dep_init_done.fill_(1.0)
    # the untrained flow is affine in logit space, z = A u + b: read A and b off the basis vectors
    was_training = flow.training
    flow.eval()
    basis = torch.cat([torch.zeros(1, flow.dim), torch.eye(flow.dim)]).to(device)
    images, _ = flow._latent(basis)
    flow.train(was_training)
    shift, linear = images[0], (images[1:] - images[0]).T  # z = linear @ u + shift
    means = gaussian.means @ linear.T + shift
    cov = linear @ (gaussian.scale_tril @ gaussian.scale_tril.transpose(1, 2)) @ linear.T
    flow.base.set_gaussians(means, torch.linalg.cholesky(cov.double()).float(), gaussian.log_prior)
    return dict(chosen)
