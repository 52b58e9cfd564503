"""The toy's verdict lines (the study's questions, answered on the 2-D world) and its report.md, from results.json."""

from __future__ import annotations

from pathlib import Path

from ..config import AuditConfig
from ..rundir import atomic_write_text, read_json

# the answer's cut-offs, as shares: YES at or above the first, PARTLY at or above the second, else NO (reversed where a
# low number is the yes: evasion, off-data points more likely than the data)
FLAGGED = (0.9, 0.5)
ABOVE_NOISE = 0.1  # PGD flagged at least this much more often than noise: YES; not more often at all: NO; else PARTLY
EVASION = (0.1, 0.5)  # evasion at or below 10 %: the detector still flags them (YES); at or above 50 %: NO
MORE_LIKELY = (0.01, 0.1)  # off-data points more likely than the median test point: under 1 %: NO; 10 % or more: YES


def _grade(value, yes, partly):
    return None if value is None else "yes" if value >= yes else "partly" if value >= partly else "no"


def _low_is_yes(value, yes, no):
    return None if value is None else "yes" if value <= yes else "no" if value >= no else "partly"


def hardest_linf(results: dict, model: str) -> dict:
    """The model's row at its largest linf budget: where the attacks fool the most points."""
    rows = [r for r in results["attacks"] if r["model"] == model and r["norm"] == "linf"]
    return max(rows, key=lambda r: r["eps"])


def toy_verdict(results: dict) -> list[dict]:
    """One line per question and model: {question, model, answer, value, detail}, every number from results."""
    lines = []
    for model in ("mlp", "flow", "hybrid"):
        r = hardest_linf(results, model)
        at = f"linf eps {r['eps']:g}, guard: {r['guard']}"
        lines.append({"question": "low p(x) flags plain PGD adversarial points", "model": model,
                      "answer": _grade(r["pgd_flagged"], *FLAGGED), "value": r["pgd_flagged"],
                      "detail": f"of {r['pgd_fooled_n']} points PGD fooled, at {at}"})
        gap = None if r["pgd_flagged"] is None else r["pgd_flagged"] - r["noise_flagged"]
        lines.append({"question": "... more often than random noise of the same size", "model": model,
                      "answer": None if gap is None else "yes" if gap >= ABOVE_NOISE else "no" if gap <= 0 else "partly",
                      "value": r["pgd_flagged"], "detail": f"noise flagged {_pct(r['noise_flagged'])}, at {at}"})
        lines.append({"question": "low p(x) still flags them when the attacker knows the detector (number: evasion)",
                      "model": model, "answer": _low_is_yes(r["aware_evading"], *EVASION), "value": r["aware_evading"],
                      "detail": f"exact grid search: {_pct(r['exact_evading'])} of the points can evade, at {at}"})
        f = results["fooling"][model]
        lines.append({"question": "fooling points grown from noise are flagged", "model": model,
                      "answer": _grade(f["flagged"], *FLAGGED), "value": f["flagged"],
                      "detail": f"{_pct(f['confident'])} of {f['n']} searches confident; the unflagged search succeeds "
                                f"in {_pct(f['unflagged_search_success'])}"})
    for model, o in results["ood"].items():
        v = o["more_likely_than_median_test"]
        lines.append({"question": "inputs off the data's support get a higher likelihood than the data", "model": model,
                      "answer": _grade(v, MORE_LIKELY[1], MORE_LIKELY[0]), "value": v,
                      "detail": f"of {o['n']} uniform points where p_data is below its 0.1 % level; "
                                f"{_pct(o['unflagged'])} unflagged"})
    return lines


AUDIT_CHECKS = (  # (check, the row's count of misses, what misses)
    ("PGD (multitargeted) misclassifies wherever the exact grid search can, within its resolution", "pgd_missed", "misclassify"),
    ("one of the package's attacks misclassifies wherever the exact grid search can, within its resolution",
     "any_attack_missed", "misclassify"),
    ("the detector-aware attack evades wherever the exact grid search can, within its resolution", "aware_missed", "evade"),
)


def toy_audit(results: dict, tolerance: float = AuditConfig().tolerance) -> list[dict]:
    """The nonlinear known-answer checks, in the audit's form {check, target, passed, detail}: per model and norm, the
    attack misses at most max(1, tolerance * n) points that the grid search shows it could have taken (the study's
    audit allows a linear model's exact answer the same shortfall)."""
    checks = []
    for model in dict.fromkeys(r["model"] for r in results["attacks"]):
        for norm in ("linf", "l2"):
            rows = [r for r in results["attacks"] if r["model"] == model and r["norm"] == norm]
            slack = max(1, round(tolerance * rows[0]["n"]))
            for check, key, verb in AUDIT_CHECKS:
                misses = ", ".join(f"{r[key]} at eps {r['eps']:g}" for r in rows)
                checks.append({"check": f"{check} ({norm})", "target": model, "passed": max(r[key] for r in rows) <= slack,
                               "detail": f"{rows[0]['n']} points; could {verb} but did not: {misses} (allowed {slack})"})
    return checks


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f} %"


def report_section(results: dict) -> str:
    """The toy's section of report.md: verdict, known answers, the seed spread, the figures."""
    s = results["seed_spread"]
    out = ["## The mechanism in two dimensions (`fooled toy`)", "",
           f"Flows of {s['seeds']} seeds, trained on the same points, agree on log p(x) where the data is and disagree "
           f"where it is not: the standard deviation of log p(x) across seeds has median {s['on_median']:.2f} nats on the "
           f"data (the region holding 90 % of it, {s['on_points']} map points) and {s['off_median']:.2f} nats off it "
           f"(outside the region holding 99.9 %, {s['off_points']} points), {s['ratio_median']:.0f} times more "
           f"(90th percentiles {s['on_p90']:.2f} and {s['off_p90']:.2f}). Maximum likelihood constrains p(x) only where "
           "there is data; elsewhere each seed puts its leftover mass somewhere else.", "",
           "| question | model | answer | number | detail |", "|---|---|---|---|---|"]
    for v in results["verdict"]:
        out.append(f"| {v['question']} | {v['model']} | **{(v['answer'] or '-').upper()}** | {_pct(v['value'])} | {v['detail']} |")
    out += ["", "Attacks against the exact answer (a grid over each ball; resolution = grid spacing, times sqrt(2) for L2): "
            "the share of attacked points where a misclassified point exists (exact) and where PGD (multitargeted: margin "
            "PGD toward each wrong class in turn) found one; where a "
            "misclassified and unflagged point exists and where the detector-aware attack found one. Missed: the grid "
            "finds one within eps minus the resolution and the attack does not (any attack: none of the three PGD points, untargeted, "
            "multitargeted or detector-aware, is misclassified there).", "",
            "| model | norm | eps | exact misclassified | PGD | PGD missed | untargeted PGD (missed) | any attack missed | "
            "exact evading | aware | aware missed | PGD flagged | noise flagged |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["attacks"]:
        out.append(f"| {r['model']} | {r['norm']} | {r['eps']:g} | {_pct(r['exact_misclassified'])} | "
                   f"{_pct(r['pgd_misclassified'])} | {r['pgd_missed']} | {_pct(r['untargeted_misclassified'])} "
                   f"({r['untargeted_missed']}) | {r['any_attack_missed']} | {_pct(r['exact_evading'])} | "
                   f"{_pct(r['aware_evading'])} | {r['aware_missed']} | {_pct(r['pgd_flagged'])} | {_pct(r['noise_flagged'])} |")
    out += ["", "The nonlinear known-answer checks (the audit's form; a failed check is reported, never hidden):", "",
            "| check | model | passed | detail |", "|---|---|---|---|"]
    out += [f"| {c['check']} | {c['target']} | {'yes' if c['passed'] else '**NO**'} | {c['detail']} |" for c in results["audit"]]
    acc = ", ".join(f"{k} {100 * v['test_acc']:.1f} %" for k, v in results["models"].items())
    out += ["", f"Test accuracy: {acc}. Detector: -log p(x), threshold at {100 * results['fpr']:.0f} % false positives on "
            f"held-out points. Run time before the figures: {results['seconds']:.0f} s, {results['cpu_seconds']:.0f} s of CPU "
            "(one thread).", ""]
    names = ("toy_a_data", "toy_b_log_p", "toy_c_decisions", "toy_d_paths", "toy_e_fooling", "toy_f_seeds")
    out += [f"![{n}](figures/{n}.png)" for n in names]
    return "\n".join(out) + "\n"


def write_toy_report(run_dir: str | Path) -> Path:
    """report.md of a toy run directory, from its results.json."""
    path = Path(run_dir) / "report.md"
    atomic_write_text(path, "# fooled toy\n\n" + report_section(read_json(Path(run_dir) / "results.json")))
    return path
