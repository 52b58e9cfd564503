"""The verdict: answers to the study's questions, each computed from results rows with its criterion stated."""

from __future__ import annotations

import numpy as np

from .stats import mean_ci

# Criteria, stated once so the report can quote them.
FLAG_TPR = 0.9  # "flagged" means at least this detection rate at the calibrated FPR
PARTLY_TPR = 0.5


def _select(rows, **match):
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _per_seed_mean(rows, key):
    """Average `key` within each seed, then return the list over seeds."""
    seeds = sorted({r["seed"] for r in rows})
    return [float(np.mean([r[key] for r in rows if r["seed"] == s])) for s in seeds]


def compute_verdict(results: dict) -> dict:
    """Answers with the numbers and criteria behind them; nothing typed by hand."""
    rows = [r for r in results["attacks"] if not r["adaptive"]]
    fpr = rows[0]["fpr"] if rows else None
    answers = []

    strongest = "pgd" if any(r["attack"] == "pgd" for r in rows) else (rows[0]["attack"] if rows else None)
    eps_all = sorted({r["eps"] for r in rows if r["attack"] == strongest and r["eps"] > 0})
    for target in sorted({r["target"] for r in rows}):
        sel = [r for r in _select(rows, target=target, attack=strongest) if r["eps"] > 0]
        if not sel:
            continue
        tpr = mean_ci(_per_seed_mean(sel, "tpr_at_fpr"))
        auc = mean_ci(_per_seed_mean(sel, "auroc"))
        answer = "yes" if tpr["mean"] >= FLAG_TPR else "partly" if tpr["mean"] >= PARTLY_TPR else "no"
        answers.append({
            "question": f"Does low p(x) flag plain {strongest.upper()} adversarial examples against the {target}?",
            "answer": answer,
            "criterion": f"mean detection rate at {fpr:.0%} validation FPR over eps {', '.join(f'{e:g}' for e in eps_all)}: "
                         f"yes if >= {FLAG_TPR:.0%}, partly if >= {PARTLY_TPR:.0%}",
            "tpr": tpr, "auroc": auc,
        })

    by_target = {t: _select(rows, target=t, attack=strongest) for t in ("cnn", "flow")}
    if all(by_target.values()):
        diffs = []
        for s in sorted({r["seed"] for r in rows}):
            acc = {t: np.mean([r["adv_acc"] for r in v if r["seed"] == s and r["eps"] > 0]) for t, v in by_target.items()}
            diffs.append(float(acc["flow"] - acc["cnn"]))
        d = mean_ci(diffs)
        answer = "yes" if d["lo"] is not None and d["lo"] > 0 else "no" if d["hi"] is not None and d["hi"] <= 0 else "unclear"
        answers.append({
            "question": "Is the generative (flow) classifier itself harder to fool than the CNN?",
            "answer": answer,
            "criterion": f"flow minus CNN accuracy under {strongest.upper()}, averaged over eps; yes if the 95% interval is above 0, no if at or below 0",
            "accuracy_gap": d,
        })
    answers += _adaptive(results, fpr) + _fooling(results) + _shallow(results, strongest) + _ood(results)
    return {"answers": answers, "attack": strongest, "fpr": fpr}


def _adaptive(results, fpr) -> list[dict]:
    rows = [r for r in results["attacks"] if r["adaptive"]]
    out = []
    for target in sorted({r["target"] for r in rows}):
        sel = [r for r in rows if r["target"] == target and r["eps"] > 0]
        ev = mean_ci(_per_seed_mean(sel, "evasion_rate"))
        out.append({
            "question": f"Does low p(x) still flag adversarial examples against the {target} when the attacker knows the detector?",
            "answer": "yes" if ev["mean"] <= 0.1 else "partly" if ev["mean"] <= 0.5 else "no",
            "criterion": f"mean evasion rate (misclassified and not flagged at {fpr:.0%} validation FPR) of detector-aware PGD over all eps: "
                         "yes if <= 10%, partly if <= 50%",
            "evasion": ev,
        })
    return out


def _fooling(results) -> list[dict]:
    rows = results.get("fooling", [])
    out = []
    for target in sorted({r["target"] for r in rows}):
        sel = [r for r in rows if r["target"] == target]
        succ = mean_ci(_per_seed_mean(sel, "success_rate"))
        flag = mean_ci(_per_seed_mean(sel, "flagged_rate"))
        out.append({
            "question": f"Are fooling images grown from noise against the {target} flagged by low p(x)?",
            "answer": "yes" if flag["mean"] >= FLAG_TPR else "partly" if flag["mean"] >= PARTLY_TPR else "no",
            "criterion": f"mean fraction flagged over classes and both searches (gradient, evolution): yes if >= {FLAG_TPR:.0%}, "
                         f"partly if >= {PARTLY_TPR:.0%}; the searches reached the confidence target in {100 * succ['mean']:.0f}% of cases",
            "flagged": flag, "success": succ,
        })
    return out


def _shallow(results, attack) -> list[dict]:
    shallow = [t for t in ("logreg", "gaussian") if any(r["target"] == t for r in results["attacks"])]
    if not shallow or not any(r["target"] == "cnn" for r in results["attacks"]):
        return []
    out = []
    for t in shallow:
        diffs = []
        for s in sorted({r["seed"] for r in results["attacks"]}):
            acc = {m: np.mean([r["adv_acc"] for r in results["attacks"] if r["seed"] == s and r["target"] == m
                               and r["attack"] == attack and r["eps"] > 0]) for m in (t, "cnn")}
            diffs.append(float(acc[t] - acc["cnn"]))
        d = mean_ci(diffs)
        out.append({
            "question": f"Is the shallow model '{t}' fooled as easily as the CNN?",
            "answer": "yes" if d["mean"] <= 0.05 else "no",
            "criterion": f"{t} minus CNN accuracy under {attack.upper()}, averaged over eps: yes if <= 5 points",
            "accuracy_gap": d,
        })
    return out


def _ood(results) -> list[dict]:
    rows = [r for r in results.get("ood", []) if r["model"] == "flow"]
    if not rows:
        return []
    sets = sorted({r["set"] for r in rows})
    frac = {name: mean_ci([r["higher_likelihood_than_test"] for r in rows if r["set"] == name]) for name in sets}
    fooled_sets = [name for name in sets if frac[name]["mean"] >= 0.5]
    return [{
        "question": "Do some inputs unlike the data get higher likelihood than the data?",
        "answer": "yes" if fooled_sets else "no",
        "criterion": "an input set counts if at least half of it has log p(x) above the median clean test image; "
                     "sets: " + ", ".join(f"{n} {100 * frac[n]['mean']:.0f}%" for n in sets),
        "sets": fooled_sets,
    }]
