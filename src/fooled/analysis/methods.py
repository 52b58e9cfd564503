"""The report's Methods section, written from the run's config."""

from __future__ import annotations

from fooled.settings import INITIAL_STEP

from ..config import AttackConfig, ModelsConfig, run_config
from ..records import attack_rows, model_names


def multitarget_note(a: AttackConfig) -> str:
    if "multitarget" not in a.losses:
        return ""
    toward = "every other class" if a.targets is None else f"the {a.targets} wrong classes with the largest first-order reachable margin"
    return f" (multitarget: targeted margin PGD toward {toward}, after Gowal et al. 2019; exact on a linear model)"


def _flow_params(m: ModelsConfig):
    """The config table of the flow this run built: [models.glow] for a Glow, else [models.flow]."""
    return m.glow if m.flow.kind == "glow" else m.flow


def flow_description(m: ModelsConfig) -> str:
    """The flow's architecture in words, from the run's config (`models` table)."""
    f = _flow_params(m)
    if m.flow.kind == "glow":
        return (f"a multiscale Glow (normflows GlowBlocks: actnorm, invertible 1x1 convolution, affine coupling with a conv net; "
                f"{f.scales} scales x {f.blocks_per_scale} blocks, {f.hidden_channels} hidden channels, log-scales bounded by "
                f"{f.scale_bound})")
    return (f"a RealNVP-style flow (normflows affine couplings with MLPs on the flattened image, {f.blocks} blocks, hidden width "
            f"{f.hidden}, log-scales bounded by {f.scale_bound}, {f.permutation} permutations)")


def base_description(m: ModelsConfig) -> str:
    """The flow's base density (and classifier head) in words."""
    head = m.glow.head if m.flow.kind == "glow" else "gaussians"
    if head != "gaussians":
        layer = "a linear" if head == "linear" else f"a one-hidden-layer ({m.glow.head_hidden} units)"
        return (f"one diagonal Gaussian in latent space for p(x), and {layer} softmax classifier on the latent for p(y|x): the hybrid "
                f"(DIGLM, Nalisnick et al. 2019), trained on -log p(x) - {m.glow.lam:g} log p(y|x), so that log p(x, y) = "
                "log p(x) + log p(y|x)")
    if m.flow.kind != "glow" and m.flow.base == "gaussian":
        return ("one full-covariance Gaussian per class in latent space, started at the Gaussian classifier fitted in closed form "
                "(couplings at the identity; the start competes in early stopping)")
    return f"one Gaussian per class in latent space (class means of norm {_flow_params(m).mean_norm})"


def _objective(m: ModelsConfig) -> str:
    if m.flow.kind == "glow" and m.glow.head != "gaussians":
        return ""
    return ", trained by maximum likelihood on (x, y); p(y|x) by Bayes' rule"


def methods(results) -> list[str]:
    cfg, info = run_config(results), results["dataset"]
    a, f, m = cfg.attacks, cfg.fooling, cfg.models
    return [
        f"- **Data**: {info['name']} ({'x'.join(map(str, info['shape']))}, {info['levels']} grey levels), stratified train/validation/test "
        f"splits per seed. Validation is used for early stopping and for every threshold; test only for reporting.",
        f"- **Models**: {', '.join(results['models'])}. The flow is {flow_description(m)} with {base_description(m)}{_objective(m)}. Adam, lr {cfg.train.lr}, batch {cfg.train.batch_size}, early stopping (patience "
        f"{cfg.train.patience}). Bits/dim: uniform dequantisation over the grey levels; scores use mid-bin dequantisation, "
        f"so they are deterministic.",
        f"- **Attacks** (white-box, on {a.max_examples or 'all'} test images): FGSM and PGD in linf at eps "
        f"{', '.join(map(str, a.eps))}, PGD in L2 at eps {', '.join(map(str, a.l2_eps))}; PGD {a.steps} steps, step "
        f"{'2.5 eps / steps' if a.step_size is None else a.step_size}, {a.restarts} random start(s), worst case per image over "
        f"the {', '.join(a.losses)} losses{multitarget_note(a)}. Detector-aware attack, on the first {a.expensive_examples} images, against each "
        f"detector: per image the best of the detector as an extra class (Carlini & Wagner 2017) and a Lagrangian PGD that lowers "
        f"the score below the threshold while staying misclassified (initial weight{'s' if len(a.aware_lambdas) > 1 else ''} "
        f"{', '.join(map(str, a.aware_lambdas))}, adapted per image; APGD step schedule from a first step of {INITIAL_STEP:g} eps), started from the PGD "
        f"adversarials, the detector-class result, "
        f"{'the nearest training image of another class that the model gets right and the detector passes (one of ' + str(a.aware_donors) + ')' if a.aware_donors else 'a random point of the ball'}"
        f" and, for a flow classifier, a latent-space attack; {a.adaptive_steps} steps per run; each budget also takes a smaller "
        f"budget's result where that one evades or ranks higher (it lies in the larger ball too). Carlini-Wagner L2 "
        f"({a.cw_binary_steps} x {a.cw_steps} steps), the audit's extra attacks and the convergence curve use the first "
        f"{a.expensive_examples} test images (so the convergence check, doubled steps and restarts, allows no image that the study's "
        f"PGD left correct to be fooled by the doubled attack when one image is more than its tolerance); the convergence check and curve run per model at the budget where PGD "
        f"leaves about half the clean accuracy. Transfer: every model on every other model's PGD adversarials. Fooling images "
        f"(Nguyen et al. 2015): {f.per_class} per class, gradient ascent ({f.steps} steps) and an evolutionary search "
        f"({f.generations} generations x {f.population}), until p(target|x) >= {f.confidence}.",
        f"- **Detection**: {results['score']}. Threshold: the {1 - cfg.detect.fpr:.0%} quantile of clean validation scores "
        f"(false-positive rate {cfg.detect.fpr:.0%}). Other detectors of the density: -log p(x | predicted class), typicality "
        f"(|-log p(x) - mean over clean validation images|, Nalisnick et al. 2019), complexity-corrected -log2 p(x) - PNG length "
        f"(Serra et al. 2020). Baselines: the attacked classifier's max-softmax (Hendrycks & Gimpel 2017), Mahalanobis distance on "
        f"the CNN's penultimate features (Lee et al. 2018), kernel density of those features and MC-dropout variance (Feinman et al. "
        f"2017, each alone), the distance to the grey-level grid (a trivial detector){pixel_densities(results)}. Every detector has "
        f"its own threshold from clean validation images.",
        "- **Counting**: detection rates count the *successful* adversarial examples only (test images the model classified "
        "correctly and the attack made wrong); evasion is the share of the correctly classified images that the attack made wrong "
        "without being flagged. The all-image rates are in results.json (`tpr_all`, `evasion_all`).",
        f"- **Controls**: random perturbations of every budget on the same images (uniform sign noise at each linf eps, Gaussian "
        f"directions scaled to each L2 eps), scored by every detector: a detector must flag adversarials more often than these. "
        f"Every adversarial and control set is also scored rounded to the data's {info['levels']} grey levels (inside the same "
        f"budget), where the clean images lie, so a detector cannot win by noticing off-grid pixels.",
        f"- **Statistics**: every number per seed in results.json. Rates are pooled over seeds and images with the wider of a Wilson "
        f"interval (its sample size divided by the seeds' overdispersion) and a two-level bootstrap (seeds, then images within "
        f"seeds); the plain attacks' detection rates (and a run's off-grid detector-aware evasion where it has no on-grid "
        f"rows) also carry the threshold's own variance (recalibrated on bootstrap resamples of the validation scores), the other rates (valid evasion, the combined defence, matched controls, "
        f"Carlini-Wagner, fooling images) carry it through the seeds alone (each seed calibrates on its own validation "
        f"images); accuracy gaps are paired on the same images; other numbers are means over seeds with a "
        f"Student t interval; all intervals are 95% and stay in range. {len(cfg.seeds)} seed(s). Each answer is "
        f"decided per eps on the interval's bounds.",
        budget_line(results),
    ]




PIXEL_DENSITIES = {"gmm": "GMM", "kde": "KDE", "gaussian": "Gaussian classifier"}


def pixel_densities(results: dict) -> str:
    """The pixel-density baselines this run scored with, in words ('' where it had none)."""
    present = {d for r in attack_rows(results) for d in r.detectors}
    names = [word for name, word in PIXEL_DENSITIES.items() if name in present]
    return "" if not names else f", and the pixel densities of the {', '.join(names[:-1]) + ' and ' * (len(names) > 1) + names[-1]}"


def budget_line(results: dict) -> str:
    """What this run's sizes were chosen to fit: its own config, device and time, not the default study's."""
    cfg = run_config(results)
    a = cfg.attacks
    minutes = results.get("seconds", 0) / 60
    return (f"- **Budget**: the sizes above are what fits this study (`{cfg.name}`, {len(cfg.seeds)} seed(s), "
            f"{minutes:.0f} minutes on {results.get('device', 'its device')}): it attacks {a.max_examples or 'all'} test images, runs "
            f"the expensive attacks on {a.expensive_examples or 'all'}, and attacks the density's other detectors against the "
            f"{', '.join(a.aware_targets) or 'no model'} only; -log p(x) is attacked against every model. Each is one "
            "`--set` away, e.g. `--set attacks.max_examples=360 --set attacks.expensive_examples=128`, for tighter intervals.")


DENSITY_MODELS = ("flow", "hybrid", "gaussian")  # classifiers that score their own inputs


def who_scores(results: dict) -> str:
    """Which of this run's classifiers the flow scores and which score themselves, in words."""
    names = model_names(results)
    own, other = [n for n in names if n in DENSITY_MODELS], [n for n in names if n not in DENSITY_MODELS]
    words = []
    if other:
        words.append(f"The {', '.join(other)} {'has' if len(other) == 1 else 'have'} no density: the flow scores their inputs")
    if own:
        words.append(f"the {', '.join(own)} {'is' if len(own) == 1 else 'are'} scored by {'its' if len(own) == 1 else 'their'} own density")
    text = "; ".join(words)
    return text[:1].upper() + text[1:] + "." if text else ""
