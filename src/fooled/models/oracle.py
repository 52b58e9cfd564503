"""A label oracle for what attacks make: a committee of classifiers that no attack is run against.

An attack on one model makes an image that this model misreads. Whether the image still shows its original
class (a real adversarial example) or now shows the attacker's class (the attack changed its meaning) is a
question for a human; a committee of differently built classifiers stands in for one: an RBF SVM and
k-nearest neighbours on pixels, optionally trained torch models (the adversarially trained CNN). None of
them is the attacked model, so the image was not optimised against them.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

from ..data import Split
from ..errors import ModelError
from . import predict

SVC_C = (0.3, 1.0, 3.0, 10.0, 30.0)  # RBF SVM penalty, chosen on validation (gamma: scikit-learn's "scale")
KNN_K = (1, 3, 5, 7, 9)  # neighbours, chosen on validation
VERDICTS = ("original", "changed", "disagree")  # the codes of `verdict_codes`, in order


def _pixels(x: torch.Tensor) -> np.ndarray:
    return x.detach().flatten(1).cpu().double().numpy()


def _best(make, grid, train: Split, val: Split):
    """The estimator of `grid` with the highest validation accuracy (the first on ties), its value and that accuracy."""
    scores = [make(v).fit(_pixels(train.x), train.y.numpy()).score(_pixels(val.x), val.y.numpy()) for v in grid]
    i = int(np.argmax(scores))
    return make(grid[i]).fit(_pixels(train.x), train.y.numpy()), grid[i], float(scores[i])


class Committee:
    """Classifiers that vote on an image's class: "svc" and "knn" on pixels, plus `extra` trained torch models by name.

    The torch models are used as given (already trained, in eval mode); `fit` trains only the two on pixels.
    """

    def __init__(self, extra: dict[str, torch.nn.Module] | None = None, c_grid=SVC_C, k_grid=KNN_K):
        extra = dict(extra or {})
        for name in ("svc", "knn"):
            if name in extra:
                raise ModelError(f"Committee: the extra member name '{name}' is taken by the pixel classifier")
        self.extra, self.c_grid, self.k_grid = extra, tuple(c_grid), tuple(k_grid)
        self.svc = self.knn = None
        self.chosen: dict = {}

    @property
    def members(self) -> tuple[str, ...]:
        """Member names, in the order of the rows of `votes`."""
        return ("svc", "knn", *self.extra)

    def fit(self, train: Split, val: Split) -> dict:
        """Fit the SVM and k-NN on train, C and k chosen by validation accuracy; returns the choices and accuracies."""
        self.svc, c, svc_acc = _best(lambda c: SVC(C=c, kernel="rbf", gamma="scale"), self.c_grid, train, val)
        self.knn, k, knn_acc = _best(lambda k: KNeighborsClassifier(n_neighbors=k), self.k_grid, train, val)
        self.chosen = {"svc_C": c, "knn_k": k, "svc_val_accuracy": svc_acc, "knn_val_accuracy": knn_acc}
        return self.chosen

    def votes(self, x: torch.Tensor) -> torch.Tensor:
        """The class each member gives each image: a LongTensor (M, N), rows in the order of `members`."""
        if self.svc is None:
            raise ModelError("Committee.votes: call fit(train, val) first")
        pixels = _pixels(x)
        rows = [torch.as_tensor(self.svc.predict(pixels)), torch.as_tensor(self.knn.predict(pixels))]
        rows += [predict(model, x) for model in self.extra.values()]
        return torch.stack([r.long().cpu() for r in rows])

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Each member's accuracy on labelled images."""
        right = (self.votes(x) == y.cpu().long()).float().mean(1)
        return {name: float(a) for name, a in zip(self.members, right)}


def verdict_codes(votes: torch.Tensor, y_original: torch.Tensor, y_attacker: torch.Tensor) -> torch.Tensor:
    """Per image an index into VERDICTS, by the rule of `oracle_verdicts`."""
    if not isinstance(votes, torch.Tensor) or votes.dim() != 2 or votes.shape[0] < 1 or votes.is_floating_point():
        raise ModelError(f"votes must be an integer tensor (members, images), got {getattr(votes, 'shape', votes)!r:.80}")
    n = votes.shape[1]
    for name, y in (("y_original", y_original), ("y_attacker", y_attacker)):
        if not isinstance(y, torch.Tensor) or y.shape != (n,) or y.is_floating_point():
            raise ModelError(f"{name} must be an integer tensor of shape ({n},), one label per image")
    y_original, y_attacker, votes = y_original.cpu().long(), y_attacker.cpu().long(), votes.cpu().long()
    if (y_original == y_attacker).any():
        raise ModelError("y_attacker equals y_original for some images: pass only the adversarials that fooled the attacked model")
    original = (votes == y_original).all(0)
    changed = 2 * (votes == y_attacker).sum(0) > votes.shape[0]
    codes = torch.full((n,), VERDICTS.index("disagree"), dtype=torch.long)
    codes[changed] = VERDICTS.index("changed")
    codes[original] = VERDICTS.index("original")
    return codes


def oracle_verdicts(votes: torch.Tensor, y_original: torch.Tensor, y_attacker: torch.Tensor) -> dict:
    """Count what the committee says about adversarial images that fooled the attacked model.

    votes (M, N): each member's label of each image; y_original (N,): the class before the attack;
    y_attacker (N,): the class the attacked model gives the adversarial (must differ from y_original).
    Per image:
      - "original": all M members say y_original (a real adversarial example: the meaning is kept);
      - "changed": a strict majority (more than M/2) says y_attacker (the attack changed the meaning);
      - "disagree": anything else.
    The first two exclude each other since y_attacker != y_original. Returns {"n", "members", and for each
    verdict its count and "<verdict>_rate" = count / n} (rates are nan when n == 0).
    """
    codes = verdict_codes(votes, y_original, y_attacker)
    n = len(codes)
    out = {"n": n, "members": int(votes.shape[0])}
    for i, verdict in enumerate(VERDICTS):
        count = int((codes == i).sum())
        out[verdict] = count
        out[f"{verdict}_rate"] = count / n if n else float("nan")
    return out
