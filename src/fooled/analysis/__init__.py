"""Analysis: statistics, the verdict, the report, figures and the threshold ablation. Reads run directories only."""

from .plots import draw_all
from .report import write_report
from .stats import mean_ci
from .verdict import compute_verdict

__all__ = ["compute_verdict", "draw_all", "mean_ci", "write_report"]
