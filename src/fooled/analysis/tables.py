"""Markdown tables of the report: numbers with 95% intervals (rates from their counts), grouped rows."""

from __future__ import annotations

from collections import defaultdict

from ..records import ANY, AuditCheck, field_of, middle_budget, rows as attack_rows_where
from .stats import mean_ci, rate_ci


def percent(v: float) -> str:
    """A rate in percent with one decimal, or more where one would round onto a multiple of 10 % (where the verdict's
    thresholds sit) that the rate does not reach: 89.96 % is not shown as 90.0 % under "yes if >= 90%"."""
    for decimals in (1, 2, 3, 4):
        text = f"{100 * v:.{decimals}f}"
        # not on a multiple of 10, or not rounded up onto it (beyond float32 noise: rates are counts over images)
        if float(text) % 10 or 100 * v > float(text) - 1e-4:
            break
    return text


def fmt(ci: dict, pct: bool = False, digits: int = 3) -> str:
    if ci["mean"] is None:
        return "n/a"
    f = percent if pct else (lambda v: f"{v:.{digits}f}")
    return f(ci["mean"]) if ci["n"] < 2 else f"{f(ci['mean'])} [{f(ci['lo'])}, {f(ci['hi'])}]"


# rates with their counts: (successes, trials) keys of a row, or (trials,) when the row stores the rate over them
COUNTS = {"adv_acc": ("n",), "clean_acc": ("n",), "tpr_all": ("n",), "evasion_all": ("n",), "tpr_at_fpr": ("n_detected", "n_success"),
          "evasion_rate": ("n_evaded", "n_correct")}


def rate_counts(rows, key) -> list[tuple[int, int]]:
    """(successes, trials) of the rate `key` (one of COUNTS) in each row, in seed order (rows without a seed, such as a
    sweep's, keep theirs): the input of `rate_ci`. Rows: typed records or plain dicts."""
    names = COUNTS[key]
    return [(field_of(r, names[0]), field_of(r, names[1])) if len(names) == 2
            else (round(field_of(r, key) * field_of(r, names[0])), field_of(r, names[0]))
            for r in sorted(rows, key=lambda r: field_of(r, "seed", 0))]


def ci_text(rows, key, pct=False, digits=3) -> str:
    """Mean and 95% interval of `key` over rows (seeds): pooled counts for the rates that have them, else over seeds."""
    if key in COUNTS and all(all(field_of(r, c) is not None for c in COUNTS[key]) and field_of(r, key) is not None for r in rows):
        return fmt(rate_ci(rate_counts(rows, key)), pct, digits)
    return fmt(mean_ci([field_of(r, key) for r in rows], bounds=(0, 1) if pct or key == "auroc" else None), pct, digits)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def group(rows, *keys) -> dict:
    """Rows (typed records or plain dicts) grouped by the values of `keys`, groups sorted by those values."""
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(field_of(r, k) for k in keys)].append(r)
    return dict(sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])))


def detector_table(results: dict) -> list[str]:
    """Every detector against PGD, PGD on the grid, detector-aware PGD and the sign-noise control, at the middle budget."""
    rows = attack_rows_where(results, norm="linf", grid=ANY)
    if not rows:
        return []
    eps = middle_budget({r.eps for r in rows})
    sets = [("pgd", "continuous", "PGD"), ("pgd", "rounded", "PGD, on grid"), ("adaptive_pgd", "continuous", "detector-aware (this detector's own attack where it had one)"),
            ("noise_linf", "continuous", "sign noise"), ("noise_linf", "rounded", "sign noise, on grid")]
    dets = list(dict.fromkeys(d for r in rows for d in r.detectors))
    attacked = {r.attacked_detector for r in rows}
    out = ["", f"### Every detector (linf eps {eps:g}; AUROC / detected %, pooled over the attacked models)", "",
           "Detected: successful adversarials flagged (controls: perturbed images flagged); AUROC of those against clean test images.", ""]
    body = []
    for d in dets:
        cells = []
        for attack, grid, _ in sets:
            rs = [r for r in rows if r.attack == attack and r.grid == grid and r.eps == eps and d in r.detectors
                  and r.attacked_detector in (None, d if d in attacked else "nll")]  # each detector against its own attack
            dd = [r.detectors[d] for r in rs]
            key = "tpr_all" if attack.startswith("noise") else "tpr_at_fpr"
            other = " (vs the -log p(x)-aware attack)" if attack == "adaptive_pgd" and d not in attacked and d != "nll" else ""
            counted = [{**x.to_dict(), "n": r.n, "n_success": r.n_success} for x, r in zip(dd, rs)]
            cells.append("-" if not dd else f"{fmt(mean_ci([x.auroc for x in dd]), digits=2)} / "
                                          f"{ci_text(counted, key, pct=True)}{other}")
        body.append([d] + cells)
    return out + [md_table(["detector"] + [label for *_, label in sets], body)]


def loss_table(results: dict) -> list[str]:
    """What each loss of the study's worst-case PGD adds: per target and budget, of the images the model got right (pooled
    over seeds), the share fooled by a run of the first loss (what a PGD of that loss alone finds) → by the worst case."""
    rows = [r for r in attack_rows_where(results, grid=("continuous", None)) if r.fooled_by]
    losses = list(rows[0].fooled_by) if rows else []
    if len(losses) < 2:
        return []
    columns = sorted({(r.attack, r.eps) for r in rows})
    cells, gaps = {}, []
    for (target, attack, eps), rs in group(rows, "target", "attack", "eps").items():
        correct = sum(r.n_correct for r in rs)
        first, every = (sum(r.fooled_by[loss] for r in rs for loss in chosen) / max(correct, 1) for chosen in (losses[:1], losses))
        cells[target, attack, eps] = f"{percent(first)} → {percent(every)}"
        gaps.append((every - first, target, attack, eps, first, every))
    gap, target, attack, eps, first, every = max(gaps)
    first_name = "ce (cross-entropy, the loss of a standard PGD such as torchattacks')" if losses[0] == "ce" else losses[0]
    out = ["", f"**Which loss fooled the images.** The study's PGD is a worst case over the losses {', '.join(losses)}, each run "
           f"on the images the earlier left correct. Each cell: of the images the model got right (pooled over seeds), the share "
           f"that {first_name} fooled → the share the worst case fooled. The largest gap: the {target}, {attack} at eps {eps:g}, "
           f"{percent(first)}% → {percent(every)}%: a PGD of {losses[0]} alone would overstate its robustness there.", ""]
    targets = list(dict.fromkeys(r.target for r in rows))
    return out + [md_table(["target"] + [f"{a} {e:g}" for a, e in columns],
                           [[t] + [cells.get((t, a, e), "-") for a, e in columns] for t in targets])]


def audit_detail(checks: list[AuditCheck]) -> str:
    """The detail of a check's first failing seed (a failure is never hidden behind a passing seed), else of its first seed."""
    return next((c for c in checks if not c.passed), checks[0]).text()


