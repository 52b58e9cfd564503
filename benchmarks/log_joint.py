"""Time our `FlowClassifier.log_joint` (all K classes from one pass) against normflows' `ClassCondFlow.log_prob`
called once per class, on the same flow.

    python benchmarks/log_joint.py

The `nf.ClassCondFlow` wraps our model's own coupling stack (same layers, same weights) and an
`nf.distributions.ClassCondDiagGaussian` holding our base's means and log-scales. normflows has no
preprocessing, so it is given our logit-space z precomputed (a small favour to it), and the numbers are
checked to agree once our dequantisation/logit log-Jacobian and the class prior are added. Digits shape
(64 dimensions, 10 classes), a batch of 512, one CPU thread, no gradients; each side is timed in process
CPU time over interleaved repeats and the median kept. The last line is `ratio: R` with
R = normflows time / our time (R > 1: ours is faster).
"""

import statistics
import time

import normflows as nf
import torch

from fooled.models.flow import FlowClassifier, FlowConfig, to_logit

SHAPE, K, LEVELS, BATCH, REPEATS = (1, 8, 8), 10, 17, 512, 15


def build_pair():
    """Our FlowClassifier (digits config, moved off its identity init) and the equivalent ClassCondFlow."""
    ours = FlowClassifier(SHAPE, K, LEVELS, FlowConfig(blocks=6, hidden=128), seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ours.train().training_loss(torch.rand(256, *SHAPE, generator=g), torch.zeros(256, dtype=torch.long))  # ActNorm init
        for p in ours.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    ours.eval()
    q0 = nf.distributions.ClassCondDiagGaussian(ours.dim, K)
    with torch.no_grad():
        q0.loc.copy_(ours.base.means.T)  # normflows stores (D, K)
        q0.log_scale.copy_(ours.base.log_scale.T)
    theirs = nf.ClassCondFlow(q0, list(ours.flows)).eval()
    return ours, theirs


def theirs_log_joint(theirs, z):
    """log p(z, k) for every class the normflows way: one full pass through the flow per class."""
    return torch.stack([theirs.log_prob(z, torch.full((len(z),), k, dtype=torch.long)) for k in range(K)], dim=1)


def median_times(*fns):
    """Median CPU time of each function; repeats interleaved so background load hits both alike."""
    times = [[] for _ in fns]
    for repeat in range(REPEATS + 1):
        for fn, ts in zip(fns, times):
            start = time.process_time()
            fn()
            if repeat:  # the first round is a warm-up
                ts.append(time.process_time() - start)
    return [statistics.median(ts) for ts in times]


@torch.no_grad()
def main():
    torch.set_num_threads(1)
    ours, theirs = build_pair()
    x = torch.rand(BATCH, *SHAPE, generator=torch.Generator().manual_seed(1))
    z, log_det_pre = to_logit(x, LEVELS, ours.cfg.alpha, None)  # mid-bin, as log_joint

    expected = theirs_log_joint(theirs, z) + log_det_pre[:, None] + ours.base.log_prior + ours.log_dy_dx
    got = ours.log_joint(x)
    gap = (got - expected).abs().max().item()
    assert gap < 1e-4 * expected.abs().max().item(), f"log_joint disagrees with normflows by {gap}"
    print(f"agreement: max |ours - normflows| = {gap:.2e} nats (|log_joint| up to {expected.abs().max().item():.0f})")

    t_ours, t_theirs = median_times(lambda: ours.log_joint(x), lambda: theirs_log_joint(theirs, z))
    print(f"ours      FlowClassifier.log_joint, one pass:       {1e3 * t_ours:8.2f} ms per batch of {BATCH}")
    print(f"normflows ClassCondFlow.log_prob, once per class:   {1e3 * t_theirs:8.2f} ms per batch of {BATCH}")
    print(f"ratio: {t_theirs / t_ours:.2f}")


if __name__ == "__main__":
    main()
