"""Learning curves: accuracy and bits/dim per epoch on train and validation images, for every model trained by epochs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from ..records import model_rows
from .style import MODEL_COLORS, model_order, save_figure, t_interval


def curve_table(results: dict) -> pd.DataFrame:
    """One row per model, seed, epoch and split ('train' / 'validation'): accuracy, bits/dim (density models) and loss."""
    out = []
    for name, rows in model_rows(results).items():
        for row in rows:
            for point in row.curve or ():
                for split, label in (("train", "train"), ("val", "validation")):
                    out.append({"model": name, "seed": row.seed, "epoch": point["epoch"] + 1, "split": label,
                                "accuracy": point.get(f"{split}_acc"), "bits/dim": point.get(f"{split}_bpd"),
                                "loss": point.get(f"{split}_loss"), "best": row.best_epoch is not None and point["epoch"] == row.best_epoch})
    return pd.DataFrame(out)


def learning_curves(results: dict, out: Path) -> list[Path]:
    """Accuracy (left) and bits/dim (right) against the epoch, solid for validation and dashed for train."""
    df = curve_table(results)
    long = df.melt(id_vars=["model", "seed", "epoch", "split"], value_vars=["accuracy", "bits/dim"], var_name="metric").dropna()
    g = sns.relplot(long, x="epoch", y="value", hue="model", hue_order=model_order(long["model"].unique()), palette=MODEL_COLORS,
                    style="split", style_order=["validation", "train"], col="metric", kind="line", errorbar=t_interval,
                    facet_kws={"sharey": False}, height=3.2, aspect=1.15)
    g.set_titles("{col_name}")
    g.set_axis_labels("epoch", "")
    g.figure.suptitle("Learning curves (mean over seeds; each model's kept weights are its best validation-loss epoch)", y=1.03, fontsize=10)
    return save_figure(g.figure, out, "learning_curves")


def stopping_text(results: dict) -> str:
    """One sentence per run: which models stopped early and which hit the epoch cap."""
    cap = results["config"]["train"]["epochs"]
    early, capped = [], []
    for name, rows in model_rows(results).items():
        trained = [r for r in rows if r.curve]
        if trained:
            (capped if any(r.epochs >= cap for r in trained) else early).append(
                f"{name} ({', '.join(f'{r.epochs} epochs, best {r.best_epoch + 1}' for r in trained)})")
    parts = ([f"stopped early (patience {results['config']['train']['patience']}): " + "; ".join(early)] if early else []) + \
        ([f"reached the cap of {cap} epochs: " + "; ".join(capped)] if capped else [])
    return "Training " + " and ".join(parts) + "." if parts else ""
