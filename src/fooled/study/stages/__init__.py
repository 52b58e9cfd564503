"""The stages of one seed, one file each, in the order `study.run.run_seed` calls them: plain attacks, controls, transfer,
detector-aware attacks, Carlini-Wagner, fooling images, the label oracle, likelihood failures, the audit. Each takes the
seed's context and what earlier stages made, and returns what it made; each attack's output is a cached stage
(`rundir.cached`, keyed in `batching`), so a rerun only scores. `scoring` turns an attacked set into a result row."""

from .audit import audit, convergence_curve, convergence_eps, convergence_grid
from .audit_aware import audit_aware
from .aware import adaptive_attacks
from .controls import controls
from .cw import carlini_wagner
from .fooling import fooling_images
from .grid_opinions import grid_opinion_checks
from .likelihood import out_of_distribution
from .oracle import label_oracle
from .plain import plain_attacks
from .scoring import counts
from .transfer import transfer

__all__ = ["adaptive_attacks", "audit", "audit_aware", "carlini_wagner", "controls", "convergence_curve", "convergence_eps",
           "convergence_grid", "counts", "fooling_images", "grid_opinion_checks", "label_oracle", "out_of_distribution", "plain_attacks", "transfer"]
