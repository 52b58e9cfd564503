"""OOD sets for a model of Fashion-MNIST, and the published numbers of the likelihood paradox to print beside ours.

Nalisnick et al. (2019) trained Glow on FashionMNIST and found MNIST test digits *more* likely (fewer bits/dim)
than FashionMNIST's own test images. MNIST itself is not needed here: scikit-learn's 8x8 digits, upsampled into
MNIST's 20x20 digit box and centred in 28x28 as MNIST's were (LeCun et al. 1998), stand in for it. Every set is
returned in [0, 1] and not yet quantised; `ood.ood_sets` rounds it to the data's grid.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

MNIST_BOX, MNIST_SIDE = 20, 28  # MNIST digits were size-normalised into 20x20 and centred in 28x28

# Published bits/dim of the paradox, for the report to print beside ours. Values as read (rounded) from the paper.
PAPER_REFERENCE = {
    "citation": "Nalisnick, Matsukawa, Teh, Gorur, Lakshminarayanan (2019), Do Deep Generative Models Know What "
                "They Don't Know?, ICLR 2019, arXiv:1810.09136",
    "model": "Glow trained on FashionMNIST",
    "bits_per_dim": {"FashionMNIST test": 2.9, "MNIST test": 1.8},
    "ours": {"FashionMNIST test": "test", "MNIST test": "MNIST-like digits"},  # our set that stands for each
}

FASHION_SETS = ("MNIST-like digits", "all black")


def fashion_sets(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """`n` MNIST-like digits (random scikit-learn digits, drawn from `generator`) and `n` all-black images, (n, 1, 28, 28)."""
    digits = _mnist_like_digits()
    pick = torch.randint(len(digits), (n,), generator=generator, device=generator.device).cpu()
    return {"MNIST-like digits": digits[pick], "all black": torch.zeros(n, 1, MNIST_SIDE, MNIST_SIDE)}


@functools.lru_cache(maxsize=1)
def _mnist_like_digits() -> torch.Tensor:
    """All 1797 scikit-learn digits, bilinearly upsampled from 8x8 to 20x20 and centred in 28x28, in [0, 1]."""
    from sklearn.datasets import load_digits

    small = torch.from_numpy(load_digits().images).float().div(16)[:, None]  # ink is high, background 0, as in MNIST
    box = F.interpolate(small, size=(MNIST_BOX, MNIST_BOX), mode="bilinear", align_corners=False).clamp(0, 1)
    pad = (MNIST_SIDE - MNIST_BOX) // 2
    return F.pad(box, (pad, pad, pad, pad))


__all__ = ["PAPER_REFERENCE", "FASHION_SETS", "fashion_sets"]
