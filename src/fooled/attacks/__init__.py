"""Adversarial and fooling attacks: pure functions (model, x, y, *, budget) -> x_adv.

Images are float tensors in [0, 1] of shape (N, C, H, W); a model maps x to logits (N, K).
Attacks leave the model's parameters, gradients and train/eval mode as they found them, stay in
the eps-ball and [0, 1], and draw randomness only from an explicit `generator`.
"""

from fooled.attacks.aware import (
    best_over_budgets,
    bpda,
    detector_aware_pgd,
    detector_class_logits,
    detector_class_pgd,
    donor_start,
    evasion_margin,
    strongest_aware_attack,
)
from fooled.attacks.controls import random_perturbation, round_to_grid
from fooled.attacks.cw import cw_l2, median_l2
from fooled.attacks.exact import linear_gaussian_l2_evadable, linear_linf_robust
from fooled.attacks.fooling import (
    fooling_evolution,
    fooling_evolution_unflagged,
    fooling_gradient,
    fooling_gradient_unflagged,
)
from fooled.attacks.latent import latent_attack, latent_class_means
from fooled.attacks.penalty import multitarget_penalty_pgd, penalty_aware_pgd
from fooled.attacks.grid import grid_aware_attack, through_grid
from fooled.attacks.gradient import attack_success, fgsm, multitarget_pgd, pgd, reachable_margins
from fooled.attacks.losses import cross_entropy, get_loss, log_margin, margin
from fooled.attacks.reference import autoattack
from fooled.attacks.worst_case import pgd_worst_case
from fooled.settings import Attacked, PGDSettings
from fooled.attacks._common import stacked

__all__ = [
    "Attacked",
    "PGDSettings",
    "attack_success",
    "autoattack",
    "best_over_budgets",
    "bpda",
    "cross_entropy",
    "cw_l2",
    "detector_aware_pgd",
    "detector_class_logits",
    "detector_class_pgd",
    "donor_start",
    "evasion_margin",
    "fgsm",
    "fooling_evolution",
    "fooling_evolution_unflagged",
    "fooling_gradient",
    "fooling_gradient_unflagged",
    "get_loss",
    "grid_aware_attack",
    "through_grid",
    "latent_attack",
    "latent_class_means",
    "linear_gaussian_l2_evadable",
    "linear_linf_robust",
    "log_margin",
    "margin",
    "median_l2",
    "multitarget_penalty_pgd",
    "multitarget_pgd",
    "penalty_aware_pgd",
    "pgd",
    "pgd_worst_case",
    "random_perturbation",
    "round_to_grid",
    "reachable_margins",
    "stacked",
    "strongest_aware_attack",
]
