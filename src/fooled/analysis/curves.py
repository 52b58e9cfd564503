"""Learning curves: accuracy and bits/dim per epoch on train and validation images, for every model trained by epochs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from ..config import run_config
from ..records import model_rows
from .style import MODEL_COLORS, model_order, save_figure


def curve_table(results: dict) -> pd.DataFrame:
    """One row per model, seed, epoch and split ('train' / 'validation'): accuracy, bits/dim (density models) and loss."""
    out = []
    for name, rows in model_rows(results).items():
        for row in rows:
            for point in row.curve or ():
                for split, label in (("train", "train"), ("val", "validation")):
                    out.append({"model": name, "seed": row.seed, "epoch": point["epoch"] + 1, "split": label,
                                "accuracy": point.get(f"{split}_acc"), "bits/dim": point.get(f"{split}_bpd"),
                                "loss": point.get(f"{split}_loss")})
    return pd.DataFrame(out)


def learning_curves(results: dict, out: Path) -> list[Path]:
    """Accuracy (left) and bits/dim (right) against the epoch, solid for validation and dashed for train."""
    df = curve_table(results)
    long = df.melt(id_vars=["model", "seed", "epoch", "split"], value_vars=["accuracy", "bits/dim"], var_name="metric").dropna()
    g = sns.relplot(long, x="epoch", y="value", hue="model", hue_order=model_order(long["model"].unique()), palette=MODEL_COLORS,
                    style="split", style_order=["validation", "train"], col="metric", kind="line", units="seed", estimator=None,
                    facet_kws={"sharey": False}, height=3.2, aspect=1.15, linewidth=1.2)
    g.set_titles("{col_name}")
    g.set_axis_labels("epoch", "")
    g.figure.suptitle("Learning curves, one line per seed (each model keeps the weights of its best validation-loss epoch)", y=1.03, fontsize=10)
    return save_figure(g.figure, out, "learning_curves")


def stopped_early(epochs: int, best_epoch: int, cap: int, patience: int) -> bool:
    """True when early stopping ended the training: before the cap, or at it with `patience` epochs past the best
    (it would have stopped there too); False when the cap cut a model that was still improving."""
    return epochs < cap or epochs - (best_epoch + 1) >= patience


def stopping_text(results: dict) -> str:
    """One sentence: per model (per seed where they differ), whether early stopping ended its training or the epoch cap
    did, before `patience` epochs without a better validation loss (the model may still have been improving)."""
    train = run_config(results).train
    cap, patience = train.epochs, train.patience
    parts = []
    for name, rows in model_rows(results).items():
        trained = [r for r in rows if r.curve]
        early = [stopped_early(r.epochs, r.best_epoch, cap, patience) for r in trained]
        if not trained:
            continue
        if len(set(early)) == 1:  # every seed ended the same way
            best = ", ".join(str(r.best_epoch + 1) for r in trained)
            parts.append(f"{name}, early stopping for every seed (after {', '.join(str(r.epochs) for r in trained)} epochs; best "
                         f"{best})" if early[0] else f"{name}, the cap for every seed (best {best})")
        else:
            parts.append(f"{name}, " + ", ".join(f"seed {r.seed} " + (f"by early stopping after {r.epochs} epochs (best {r.best_epoch + 1})"
                                                                       if e else f"at the cap (best {r.best_epoch + 1})")
                                                 for r, e in zip(trained, early)))
    if not parts:
        return ""
    return (f"How training ended (early stopping: {patience} epochs without a better validation loss; the cap: {cap} "
            "epochs): " + "; ".join(parts) + ".")
