"""The study: train every model of a config and seed, attack, score, write the run directory; sweeps and the trade-off."""

from .run import all_seeds, default_jobs, resolve_device, run_seed, run_study, silent, stderr_log

__all__ = ["all_seeds", "default_jobs", "resolve_device", "run_seed", "run_study", "silent", "stderr_log"]
