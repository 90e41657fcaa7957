"""The ``fusion`` backend: the classical detector and the learned one (ONNX) on every photo, one answer, a
confidence, and the reasons a person should look.

The two fail differently. The classical detector finds pale and thin specimens the small model misses, and
never invents a box where nothing contrasts; the learned model ignores fibres, rim shadows and debris that
the classical one takes for the specimen. So per photo:

1. **Empty well** when neither found anything; when only the learned model found something and its score is
   below ``empty_learned_only_max``; or when the classical detector found something, its peak strength is at
   most ``empty_classical_max``, and the learned score is below ``empty_learned_max`` (or it found nothing).
2. Otherwise, when both have a box and they overlap (IoU >= ``agree_iou``): ``agree_box`` says whose box
   (the classical one follows the organism's mask; the learned one includes pale appendages; ``mean``: the
   average of the two, each side half-way between them).
3. They disagree (different boxes, or only one has one): the learned box when its score reaches
   ``trust_learned``, else the classical box, else the learned one.

The thresholds (a ``FusionRule``) are fitted on the training half of the real hard cases only
(``fit_rule``: a grid search for the best worse-of-the-two of right boxes and right empty wells) and shipped
beside the model as JSON. The **confidence** of a photo is the chance that its answer is right, from a
logistic regression of the training photos' mistakes on what the photo shows (``CONFIDENCE_FEATURES``: how well
the two boxes overlap, each detector's score and candidates, the answer's box size, whether it is on the rim or
an empty well; ``fit_confidence_model``, its L2 penalty chosen by cross-validation within the train half), so
0.9 means "about nine in ten photos like this one were right". With too few wrong (or right) training photos for
a regression, and in rules fitted before it, the confidence is the accuracy on the training photos of the same
*situation* (agree / learned chosen / classical chosen / empty, ...), split in two where they differ clearly by
one measurement (``fit_confidence_splits``, a likelihood-ratio test corrected for the thresholds tried).
``review_reasons`` names why a photo should be looked at: ``low_confidence``, ``backends_disagree``,
``several_specimens``, ``box_on_rim`` (the box reaches the photo's border, where the well's rim is). With a
confidence model, ``low_confidence`` means "more likely wrong than the average training photo", and the two
detectors' disagreement alone flags nothing (the model weighs it); it is named among a flagged photo's reasons.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from statistics import NormalDist

import numpy as np

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.detect.base import Detection
from bioscan_rebuild.detect.evaluate import iou as box_iou
from bioscan_rebuild.detect.shipped import FUSION_RULE, rule_model_problem, shipped

# 2: a learned answer is multiple_candidates only for a second box above the onnx backend's bar
# 3: a box on the rim makes the photo's status touches_edge (images.process): only this backend says box_on_rim
# 4: either detector seeing several objects flags several_specimens (only the chosen one did)
VERSION = "fusion-4"
AGREE_IOU = 0.5  # the boxes agree at this IoU unless the rule says otherwise (rules fitted before agree_iou)
# the fit's candidates for agree_iou, the first preferred on ties: two boxes overlapping less than half are often
# the same specimen boxed with and without its appendages, where the mean box is right
AGREE_IOUS = (0.5, 0.45, 0.4, 0.35, 0.3)
RIGHT_IOU = 0.5  # a box is right when its IoU with the hand-drawn one reaches this
AGREE_BOXES = ("classical", "learned", "mean")  # in the fit's tie order
SITUATIONS = ("agree", "learned_chosen", "classical_chosen", "learned_only", "classical_only", "empty")
REVIEW_REASONS = ("low_confidence", "backends_disagree", "several_specimens", "box_on_rim")
# What a situation's confidence may be split on (at most once per situation): the two boxes' IoU (0 when either
# has none) and each detector's score (0 without a box). The grids are fixed, so a split cannot chase single photos.
SPLIT_FEATURES = {
    "agree_iou": (0.5, 0.6, 0.7, 0.8, 0.9),
    "learned_score": (0.05, 0.1, 0.2, 0.3, 0.5, 0.7),
    "classical_score": (50.0, 80.0, 100.0, 130.0, 160.0),
}
SPLIT_MIN_PHOTOS = 8  # training photos on each side of a split
# The log-likelihood a split must gain: a likelihood-ratio test of "one accuracy" against "two" at 5 %,
# Bonferroni-corrected for the thresholds tried per situation (half the chi-square point, 1 degree of freedom).
# Uncorrected (1.92), a third of the situations whose mistakes follow no measurement at all got a split.
SPLIT_THRESHOLDS = sum(len(grid) for grid in SPLIT_FEATURES.values())
SPLIT_MIN_GAIN = round(NormalDist().inv_cdf(1 - 0.05 / SPLIT_THRESHOLDS / 2) ** 2 / 2, 3)
# The confidence model's measurements of a photo (``confidence_features``), in its coefficients' order.
CONFIDENCE_FEATURES = (
    "agree_iou",  # IoU of the two boxes (0 when either has none)
    "learned_score",  # the learned model's top score (0 without a box)
    "classical_score",  # the classical peak strength / 100, at most 3 (0 without a box)
    "classical_candidates",  # groups that cleared the classical bar, at most 10
    "learned_candidates",  # boxes the learned model reported down to its low bar, at most 10
    "box_size",  # square root of the answer's box area over the photo's (0 for an empty well)
    "box_on_rim",  # 1 when the answer's box reaches the border
    "boxed",  # 1 when the answer is a box, 0 for an empty well
)
# L2 penalties tried on the standardised coefficients, strongest first (the first of equal cross-validated
# log-losses wins); the folds split the train-half photos by their order.
CONFIDENCE_L2 = (100.0, 10.0, 1.0, 0.1)
CONFIDENCE_FOLDS = 5
# a regression needs at least this many wrong and this many right training photos; else situation confidences
CONFIDENCE_MIN_PHOTOS = 10


@dataclass(frozen=True)
class FusionRule:
    empty_learned_max: float = 0.25
    # the learned model's bar where the classical detector found nothing; None = empty_learned_max
    empty_learned_only_max: float | None = None
    empty_classical_max: float = 0.0
    trust_learned: float = 0.5
    agree_box: str = "classical"
    agree_iou: float = AGREE_IOU  # both boxes at or above this IoU: they agree (``agree_box``)
    review_below: float = 0.85  # confidence under this -> needs review (low_confidence)
    rim_margin: int = 2  # px: a box this close to the border is on the rim
    learned_tta: bool = False  # the learned model runs with test-time augmentation (OnnxDetector ``tta``)
    confidence: dict = field(default_factory=lambda: dict.fromkeys(SITUATIONS, 0.5))
    # situation -> {feature, at, below, above, photos}: the confidence below / at or above ``at`` of that feature
    confidence_splits: dict = field(default_factory=dict)
    # {features, center, scale, coef, intercept, l2, ...}: the logistic model of a wrong answer (None: the
    # situation confidences above are the photos')
    confidence_model: dict | None = None

    @classmethod
    def load(cls, path: str | Path | None = None) -> FusionRule:
        """The rule from JSON (``fit_rule``'s output); the shipped one by default. A file that is not such a rule
        is an ``InputError`` naming it (unknown keys, values out of range, not JSON)."""
        where = path or "the shipped fusion.json"
        try:
            rule = _rule_file(path).get("rule")
            if not isinstance(rule, dict):
                raise ValueError("no 'rule' object")
            unknown = sorted(set(rule) - {f.name for f in fields(cls)})
            if unknown:
                raise ValueError(f"unknown keys {unknown}")
            return cls(**rule)
        except (ValueError, AttributeError) as error:  # JSONDecodeError is a ValueError
            raise InputError(f"{where}: not a usable fusion rule ({error})") from None

    @staticmethod
    def fitted_on(path: str | Path | None = None) -> dict:
        """What the rule in ``path`` (the shipped one by default) was fitted on: model sha256, dev sets, half and
        the classical detector's params (a rule written before rules recorded them: classical-3's version)."""
        fitted = dict(_rule_file(path).get("fitted_on") or {})
        fitted.setdefault("classical", {"version": LEGACY_CLASSICAL_VERSION})
        return fitted

    def __post_init__(self):
        problems = [
            f"{name} = {getattr(self, name)!r} is not a finite number"
            for name in ("empty_learned_max", "empty_classical_max", "trust_learned", "agree_iou", "review_below")
            if not _finite(getattr(self, name))
        ]
        if self.empty_learned_only_max is not None and not _finite(self.empty_learned_only_max):
            problems.append(f"empty_learned_only_max = {self.empty_learned_only_max!r} is not a finite number")
        if self.agree_box not in AGREE_BOXES:
            problems.append(f"agree_box = {self.agree_box!r} is not one of {AGREE_BOXES}")
        if not (isinstance(self.rim_margin, int) and not isinstance(self.rim_margin, bool) and self.rim_margin >= 0):
            problems.append(f"rim_margin = {self.rim_margin!r} is not a whole number of pixels >= 0")
        if not isinstance(self.confidence, dict) or set(self.confidence) - set(SITUATIONS):
            problems.append(f"confidence = {self.confidence!r}: situations are {SITUATIONS}")
        else:
            problems += [
                f"confidence[{k!r}] = {v!r} is not a chance in [0, 1]"
                for k, v in self.confidence.items()
                if not (_finite(v) and 0 <= v <= 1)
            ]
        if problems:  # a typo would otherwise fuse agreeing boxes to nothing, or never flag a photo (NaN)
            raise ValueError("fusion rule: " + "; ".join(problems))
        if not isinstance(self.confidence_splits, dict):
            raise ValueError(f"fusion rule: confidence_splits = {self.confidence_splits!r} is not an object")
        for situation, split in self.confidence_splits.items():
            if (
                situation not in SITUATIONS
                or not isinstance(split, dict)
                or split.get("feature") not in SPLIT_FEATURES
                or not all(_finite(split.get(key)) for key in ("at", "below", "above"))
                or not all(0 <= split[key] <= 1 for key in ("below", "above"))  # chances, as ``confidence``'s
            ):
                raise ValueError(f"fusion rule: confidence split {situation!r}: {split!r} is not a valid split")
        if self.confidence_model is not None and not _valid_model(self.confidence_model):
            raise ValueError(f"fusion rule: {self.confidence_model!r} is not a valid confidence model")

    def as_dict(self) -> dict:
        """The rule's fields (no ``confidence_splits`` when it has none: a rule from before splits existed keeps
        its store keys)."""
        fields = asdict(self)
        if not fields["confidence_splits"]:
            del fields["confidence_splits"]
        if fields["confidence_model"] is None:  # likewise for a rule from before the model
            del fields["confidence_model"]
        return fields

    def confidence_levels(self) -> set[float] | None:
        """Every confidence a photo can get from this rule; None when a confidence model gives each photo its own."""
        if self.confidence_model is not None:
            return None
        plain = {float(v) for s, v in self.confidence.items() if s not in self.confidence_splits}
        return plain | {float(v[side]) for v in self.confidence_splits.values() for side in ("below", "above")}


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _valid_model(model) -> bool:
    """A confidence model ``model_confidence`` can use: known, distinct features, one finite number each."""
    if not isinstance(model, dict):
        return False
    features = model.get("features")
    if not isinstance(features, list) or not features or len(set(features)) != len(features):
        return False
    if not set(features) <= set(CONFIDENCE_FEATURES):
        return False
    numbers = [model.get("intercept")]
    for key in ("center", "scale", "coef"):
        values = model.get(key)
        if not isinstance(values, list) or len(values) != len(features):
            return False
        numbers += values
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        return False
    return all(v > 0 for v in model["scale"])


def _rule_file(path: str | Path | None) -> dict:
    return json.loads(Path(path).read_text() if path else shipped(FUSION_RULE).read_text())


# what of the classical detector's params the rule must have been fitted with: its version sets the units of the
# score its thresholds are in (other params a user may tune: they are in the detector's params and store keys)
CLASSICAL_SCORE_UNITS = ("version",)
# rules fitted before they recorded the classical detector's params were fitted with this version (or older)
LEGACY_CLASSICAL_VERSION = "classical-3"
# versions whose scores are another's: classical-4 only resamples a photo of another size than 1024x768 first
SAME_SCORE_UNITS = {"classical-4": "classical-3"}


def score_units(version):
    """The classical version whose score units ``version``'s scores are in."""
    return SAME_SCORE_UNITS.get(version, version)


def has_box(detection: Detection | None) -> bool:
    return detection is not None and detection.status != "no_object" and detection.box is not None


def mean_box(a, b) -> tuple[int, int, int, int]:
    """Each side half-way between the two boxes' (rounded half to even, as ``round``)."""
    return tuple(int(round((u + v) / 2)) for u, v in zip(a, b, strict=True))


def chosen_box(source: str, classical: Detection, learned: Detection):
    """The box a ``decide`` source stands for (None for ``none``)."""
    if source == "mean":
        return mean_box(classical.box, learned.box)
    chosen = {"classical": classical, "learned": learned}.get(source)
    return None if chosen is None else chosen.box


def decide(classical: Detection, learned: Detection, rule: FusionRule) -> tuple[str, str]:
    """(situation, source): which box the rule takes (``source`` in classical / learned / mean / none)."""
    c_box, l_box = has_box(classical), has_box(learned)
    l_score = learned.score if l_box else 0.0
    c_score = classical.score if c_box else 0.0
    if not c_box:
        only_max = rule.empty_learned_max if rule.empty_learned_only_max is None else rule.empty_learned_only_max
        return ("learned_only", "learned") if l_box and l_score >= only_max else ("empty", "none")
    if l_score < rule.empty_learned_max and c_score <= rule.empty_classical_max:
        return "empty", "none"
    if c_box and l_box and box_iou(classical.box, learned.box) >= rule.agree_iou:
        return "agree", rule.agree_box
    if c_box and l_box:
        return ("learned_chosen", "learned") if l_score >= rule.trust_learned else ("classical_chosen", "classical")
    return "classical_only", "classical"


def photo_features(classical: Detection, learned: Detection) -> dict[str, float]:
    """The measurements a confidence may be split on (``SPLIT_FEATURES``)."""
    c_box, l_box = has_box(classical), has_box(learned)
    return {
        "agree_iou": box_iou(classical.box, learned.box) if c_box and l_box else 0.0,
        "learned_score": float(learned.score) if l_box else 0.0,
        "classical_score": float(classical.score) if c_box else 0.0,
    }


def confidence_of(rule: FusionRule, situation: str, features: dict[str, float]) -> float:
    split = rule.confidence_splits.get(situation)
    if split:
        return float(split["below"] if features[split["feature"]] < split["at"] else split["above"])
    return float(rule.confidence.get(situation, 0.0))


def on_rim(box, shape_hw: tuple[int, int], margin: int) -> bool:
    """The box reaches within ``margin`` px of the photo's border (where the well's rim is)."""
    height, width = shape_hw
    x0, y0, x1, y1 = box
    return x0 <= margin or y0 <= margin or x1 >= width - margin or y1 >= height - margin


def confidence_features(
    classical: Detection, learned: Detection, box, shape_hw: tuple[int, int], rim_margin: int
) -> dict[str, float]:
    """The photo's ``CONFIDENCE_FEATURES``; ``box``: the answer's box (None for an empty well)."""
    c_box, l_box = has_box(classical), has_box(learned)
    height, width = shape_hw
    area = 0.0 if box is None else max(0, box[2] - box[0]) * max(0, box[3] - box[1]) / max(1, width * height)
    return {
        "agree_iou": box_iou(classical.box, learned.box) if c_box and l_box else 0.0,
        "learned_score": float(learned.score) if l_box else 0.0,
        "classical_score": min(float(classical.score), 300.0) / 100.0 if c_box else 0.0,
        "classical_candidates": float(min(classical.candidates or 0, 10)) if c_box else 0.0,
        "learned_candidates": float(min(learned.candidates or 0, 10)) if l_box else 0.0,
        "box_size": math.sqrt(area),
        "box_on_rim": float(box is not None and on_rim(box, shape_hw, rim_margin)),
        "boxed": float(box is not None),
    }


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64)))  # = 1 / (1 + exp(-z)), without overflow


def model_confidence(model: dict, features: dict[str, float]) -> float:
    """The chance the answer is right (1 - the modelled chance of a wrong answer), rounded to 4 places."""
    x = np.array([features[name] for name in model["features"]], np.float64)
    z = model["intercept"] + float(np.dot((x - np.array(model["center"])) / np.array(model["scale"]), model["coef"]))
    confidence = float(1.0 - _sigmoid(z))
    return round(confidence, 4) if math.isfinite(confidence) else 0.0  # a measurement gone wrong: a person looks


def fuse(classical: Detection, learned: Detection, rule: FusionRule, shape_hw: tuple[int, int]) -> Detection:
    """One Detection from both; ``score`` is the confidence, ``review`` the reasons to look."""
    situation, source = decide(classical, learned, rule)
    box = chosen_box(source, classical, learned)
    if rule.confidence_model is not None:
        features = confidence_features(classical, learned, box, shape_hw, rule.rim_margin)
        confidence = model_confidence(rule.confidence_model, features)
    else:
        confidence = confidence_of(rule, situation, photo_features(classical, learned))
    reasons = []
    if confidence < rule.review_below:
        reasons.append("low_confidence")
    if has_box(classical) != has_box(learned) or (
        has_box(classical) and has_box(learned) and box_iou(classical.box, learned.box) < rule.agree_iou
    ):
        reasons.append("backends_disagree")
    # the organism's pixels come from the classical mask whenever its box is (part of) the answer
    chosen = {"classical": classical, "learned": learned, "mean": classical}.get(source)
    if chosen is not None:
        # either detector seeing several objects: the answer's box may hold one of two specimens, or both
        if "multiple_candidates" in (classical.status, learned.status):
            reasons.append("several_specimens")
        if on_rim(box, shape_hw, rule.rim_margin):
            reasons.append("box_on_rim")
    if rule.confidence_model is not None and reasons == ["backends_disagree"]:
        # the model weighs the disagreement (the boxes' overlap is one of its measurements) and still trusts the
        # answer: no reason to look. A flagged photo keeps it among its reasons.
        reasons = []
    if chosen is None:
        return Detection("no_object", None, score=confidence, candidates=0, review=tuple(reasons))
    return Detection(
        chosen.status,
        box,
        pixel_count=chosen.pixel_count if source != "learned" else None,
        score=confidence,
        candidates=chosen.candidates,
        mask=chosen.mask if source != "learned" else None,
        review=tuple(reasons),
    )


def _right(box, truth_box) -> bool:
    if box is None:
        return truth_box is None
    return truth_box is not None and box_iou(box, truth_box) >= RIGHT_IOU


def score_rule(rule: FusionRule, samples: list[tuple[Detection, Detection, tuple | None]]) -> dict:
    """Right specimens, right empty wells, and per situation (photos, right) of ``rule`` on samples."""
    per = {s: [0, 0] for s in SITUATIONS}
    specimens = empties = right_specimens = right_empties = 0
    for classical, learned, truth in samples:
        situation, source = decide(classical, learned, rule)
        right = _right(chosen_box(source, classical, learned), truth)
        per[situation][0] += 1
        per[situation][1] += int(right)
        if truth is None:
            empties += 1
            right_empties += int(right)
        else:
            specimens += 1
            right_specimens += int(right)
    return {
        "specimens_right": right_specimens / max(1, specimens),
        "empty_right": right_empties / max(1, empties),
        "situations": per,
    }


def _laplace(right: int, photos: int) -> float:
    return (right + 1) / (photos + 2)


def _log_likelihood(right: int, photos: int) -> float:
    p = _laplace(right, photos)
    return right * math.log(p) + (photos - right) * math.log(1 - p)


def fit_confidence_splits(outcomes: list[tuple[str, dict, bool]]) -> dict:
    """Per situation, the one split of its training photos (``outcomes``: situation, ``photo_features``, right)
    by a ``SPLIT_FEATURES`` threshold that best separates right from wrong photos, by the Laplace-smoothed
    binomial log-likelihood, when it gains at least ``SPLIT_MIN_GAIN`` with ``SPLIT_MIN_PHOTOS`` on each side;
    ties go to the first feature and threshold in ``SPLIT_FEATURES`` order."""
    splits = {}
    for situation in SITUATIONS:
        mine = [(features, right) for s, features, right in outcomes if s == situation]
        base = _log_likelihood(sum(right for _, right in mine), len(mine))
        best_gain, best = SPLIT_MIN_GAIN - 1e-12, None  # at least SPLIT_MIN_GAIN, up to float rounding
        for feature, grid in SPLIT_FEATURES.items():
            for at in grid:
                below = [right for features, right in mine if features[feature] < at]
                above = [right for features, right in mine if features[feature] >= at]
                if min(len(below), len(above)) < SPLIT_MIN_PHOTOS:
                    continue
                sides = [(sum(below), len(below)), (sum(above), len(above))]
                gain = sum(_log_likelihood(*side) for side in sides) - base
                if gain > best_gain:  # strictly: a tie keeps the earlier split
                    best_gain = gain
                    best = {
                        "feature": feature,
                        "at": at,
                        "below": round(_laplace(*sides[0]), 4),
                        "above": round(_laplace(*sides[1]), 4),
                        "photos": [sides[0][1], sides[1][1]],
                    }
        if best:
            splits[situation] = best
    return splits


def _penalised_loss(design: np.ndarray, wrong: np.ndarray, w: np.ndarray, penalty: np.ndarray) -> float:
    z = design @ w
    return float(np.sum(np.logaddexp(0.0, z) - wrong * z) + 0.5 * np.sum(penalty * w * w))


def _fit_logistic(z: np.ndarray, wrong: np.ndarray, l2: float) -> np.ndarray | None:
    """[intercept, coefficients] of the L2-penalised logistic regression of ``wrong`` on the standardised ``z``
    (the intercept unpenalised), by Newton's method with step halving (a step is taken whole unless it would
    raise the penalised loss): deterministic. None when it has not converged (a measurement that all but
    separates the wrong photos from the right ones can drive the unpenalised intercept away)."""
    design = np.column_stack([np.ones(len(z)), z])
    penalty = np.full(design.shape[1], float(l2))
    penalty[0] = 0.0
    # a start at the base rate: the unpenalised intercept then never has to run far
    rate = np.clip(wrong.mean(), 1e-6, 1 - 1e-6)
    w = np.zeros(design.shape[1])
    w[0] = math.log(rate / (1 - rate))
    loss = _penalised_loss(design, wrong, w, penalty)
    for _ in range(100):
        p = _sigmoid(design @ w)
        gradient = design.T @ (p - wrong) + penalty * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while True:
            trial = w - scale * step
            trial_loss = _penalised_loss(design, wrong, trial, penalty)
            if trial_loss <= loss or scale < 1e-6:
                break
            scale /= 2
        w, loss = trial, trial_loss
        if np.abs(scale * step).max() < 1e-10:
            break
    gradient = design.T @ (_sigmoid(design @ w) - wrong) + penalty * w
    return w if np.isfinite(w).all() and np.abs(gradient).max() < 1e-6 else None


def _log_loss(w: np.ndarray, z: np.ndarray, wrong: np.ndarray) -> float:
    p = np.clip(_sigmoid(w[0] + z @ w[1:]), 1e-12, 1 - 1e-12)
    return float(-np.mean(wrong * np.log(p) + (1 - wrong) * np.log(1 - p)))


def fit_confidence_model(features: list[dict[str, float]], wrong: list[bool]) -> dict | None:
    """The logistic model of a wrong answer on the training photos' ``CONFIDENCE_FEATURES`` (standardised), its
    L2 penalty the one of ``CONFIDENCE_L2`` with the lowest log-loss over ``CONFIDENCE_FOLDS`` cross-validation
    folds (photo i in fold i mod folds; a fold whose training part lacks wrong or right photos is skipped, for
    every penalty alike). None with fewer than ``CONFIDENCE_MIN_PHOTOS`` wrong or right photos, a measurement
    that is not a finite number, or a fit that does not converge. Its numbers are rounded to 6 places, and the
    confidence is computed from the rounded ones."""
    y = np.asarray(wrong, np.float64)
    if min(int(y.sum()), int(len(y) - y.sum())) < CONFIDENCE_MIN_PHOTOS:
        return None
    x = np.array([[f[name] for name in CONFIDENCE_FEATURES] for f in features], np.float64)
    if not np.isfinite(x).all():
        return None
    center = x.mean(axis=0).round(6)
    scale = x.std(axis=0).round(6)
    scale[scale <= 0] = 1.0  # a measurement that never varies in training: it counts nothing
    z = (x - center) / scale
    folds = np.arange(len(y)) % CONFIDENCE_FOLDS
    cv_loss = {}
    for l2 in CONFIDENCE_L2:
        total, scored = 0.0, 0
        for k in range(CONFIDENCE_FOLDS):
            train, test = folds != k, folds == k
            if min(y[train].sum(), (1 - y[train]).sum()) == 0:
                continue
            w = _fit_logistic(z[train], y[train], l2)
            if w is None:  # this penalty cannot hold the fit: it does not compete
                total, scored = math.inf, 1
                break
            total += _log_loss(w, z[test], y[test]) * int(test.sum())
            scored += int(test.sum())
        # 6 decimals, as every number of the rule: the 9th moved with the machine's float rounding, so a refit of
        # the shipped rule gave other bytes on another CPU
        cv_loss[l2] = round(total / scored, 6) if scored else math.inf
    best = min(CONFIDENCE_L2, key=lambda l2: cv_loss[l2])  # min keeps the first (strongest) of equals
    w = _fit_logistic(z, y, best)
    if w is None or not math.isfinite(cv_loss[best]):
        return None
    w = w.round(6)
    return {
        "features": list(CONFIDENCE_FEATURES),
        "center": center.tolist(),
        "scale": scale.tolist(),
        "intercept": float(w[0]),
        "coef": w[1:].tolist(),
        "l2": best,
        "cv_log_loss": {str(l2): loss if math.isfinite(loss) else None for l2, loss in cv_loss.items()},
        "photos": len(y),
        "wrong": int(y.sum()),
    }


def rule_key(result: dict) -> tuple[float, float]:
    """What the fit maximises: the worse of the two rates (each has its own target: a sum would trade
    specimens for the fewer empty wells), then their sum."""
    specimens, empties = result["specimens_right"], result["empty_right"]
    return round(float(min(specimens, empties)), 9), round(float(specimens + empties), 9)


def fit_rule(
    samples: list[tuple[Detection, Detection, tuple | None]],
    review_below: float = 0.85,
    learned_tta: bool = False,
    shapes: list[tuple[int, int]] | None = None,
) -> tuple:
    """The rule with the best rates of specimens right and empty wells right on ``samples`` (classical detection,
    learned detection, hand-drawn box or None): the highest worse-of-the-two (each rate has its own target: a
    sum would trade specimens for the fewer empty wells), then the highest sum; ties go to the higher agree_iou
    (the usual 0.5 first), then the smaller empty-well bars, trust bar, agree_box in ``AGREE_BOXES`` order and
    learned-only bar. ``shapes``: the photos' (height, width); with them, the photos' confidence is the
    ``fit_confidence_model`` of its mistakes (when it has enough wrong and right photos), and ``review_below`` the
    training photos' share of right answers (a photo more likely wrong than the average one is flagged). The
    per-situation accuracies (Laplace-smoothed: (right + 1) / (photos + 2)) are kept in the rule; without a model
    they are the confidences, split where ``fit_confidence_splits`` finds a clear split. Returns (rule, its
    score)."""
    if not samples:
        raise ValueError("fit_rule needs at least one photo (no train-half photo was given)")
    c_box = np.array([has_box(c) for c, _, _ in samples])
    l_box = np.array([has_box(y) for _, y, _ in samples])
    c_score = np.array([c.score if has_box(c) else 0.0 for c, _, _ in samples])
    l_score = np.array([y.score if has_box(y) else 0.0 for _, y, _ in samples])
    # IoU of the two boxes (-1 where one has none: they never agree)
    pair_iou = np.array([box_iou(c.box, y.box) if has_box(c) and has_box(y) else -1.0 for c, y, _ in samples])
    empty = np.array([t is None for _, _, t in samples])
    c_right = np.array([has_box(c) and t is not None and box_iou(c.box, t) >= RIGHT_IOU for c, _, t in samples])
    l_right = np.array([has_box(y) and t is not None and box_iou(y.box, t) >= RIGHT_IOU for _, y, t in samples])
    agree_right = {
        "classical": c_right,
        "learned": l_right,
        "mean": np.array([has_box(c) and has_box(y) and _right(mean_box(c.box, y.box), t) for c, y, t in samples]),
    }
    n_spec, n_empty = max(1, int((~empty).sum())), max(1, int(empty.sum()))

    quantiles = np.linspace(0, 1, 41)
    # ... and a bar above every learned score (``l_score < bar`` is strict): "never trust the learned box alone"
    above_all = float(np.nextafter(max(float(l_score.max(initial=0.0)), 1.0), np.inf))
    empty_l = sorted({0.0, above_all, *np.quantile(np.append(l_score[l_box], 0.0), quantiles).round(3).tolist()})
    empty_c = sorted({0.0, *np.quantile(np.append(c_score[c_box], 0.0), quantiles).round(1).tolist()})
    trust = np.round(np.linspace(0.05, 0.95, 19), 2).tolist()
    # Photos where the classical detector found nothing depend on empty_learned_only_max alone: their right
    # specimens and right empty wells for every candidate bar at once.
    only_bars = np.array(empty_l)
    only = ~c_box
    only_empty = only & (~l_box | (l_score[None, :] < only_bars[:, None]))
    only_right = np.where(only_empty, empty, l_right) & only
    only_specimens, only_empties = (only_right & ~empty).sum(axis=1), (only_right & empty).sum(axis=1)
    # Every (agree_iou, trust_learned, agree_box) at once: one row per combination, in that product order, of
    # whether the box it takes is right (before the empty-well call).
    combos = list(itertools.product(AGREE_IOUS, trust, AGREE_BOXES))
    chosen_right = np.array(
        [
            np.where(pair_iou >= ai, agree_right[agree_box], np.where(l_box & (l_score >= tl), l_right, c_right))
            for ai, tl, agree_box in combos
        ],
        dtype=np.int64,
    ).reshape(len(combos), len(samples))
    specimen_boxes = c_box & ~empty
    best, best_key = None, None
    for el, ec in itertools.product(empty_l, empty_c):
        called_empty = c_box & (l_score < el) & (c_score <= ec)
        right_empties = int((called_empty & empty).sum()) + only_empties  # per only_bar
        right_specimens = (chosen_right @ (specimen_boxes & ~called_empty))[:, None] + only_specimens[None, :]
        specimens, empties = right_specimens / n_spec, right_empties[None, :] / n_empty
        # the worse of the two rates first (both have a target), then their sum; then, at equal rates, the
        # earliest combination (the usual agreement bar, the smaller trust bar, ...) and the smaller only_bar:
        # argmax takes the first of equals in that (row-major) order
        worst, total = np.minimum(specimens, empties).round(9), (specimens + empties).round(9)
        c, k = np.unravel_index(int(np.argmax(np.where(worst == worst.max(), total, -np.inf))), worst.shape)
        c, k = int(c), int(k)
        ai, tl, agree_box = combos[c]
        key = (
            float(worst[c, k]),
            float(total[c, k]),
            -AGREE_IOUS.index(ai),
            -el,
            -ec,
            -tl,
            -AGREE_BOXES.index(agree_box),
            -only_bars[k],
        )
        if best_key is None or key > best_key:
            best_key = key
            best = FusionRule(
                empty_learned_max=el,
                empty_classical_max=ec,
                trust_learned=tl,
                agree_box=agree_box,
                agree_iou=ai,
                review_below=review_below,
                empty_learned_only_max=float(only_bars[k]),
                learned_tta=learned_tta,
            )
    result = score_rule(best, samples)
    # the grid search above restates ``decide`` in arrays; the two must agree on the winner's score
    if any(abs(a - b) > 1e-6 for a, b in zip(rule_key(result), best_key[:2])):
        raise AssertionError(f"fit_rule's search and decide() disagree on {best}")
    confidence = {s: round(_laplace(right, n), 4) for s, (n, right) in result["situations"].items()}
    outcomes, features = [], []
    for i, (classical, learned, truth) in enumerate(samples):
        situation, source = decide(classical, learned, best)
        box = chosen_box(source, classical, learned)
        outcomes.append((situation, photo_features(classical, learned), _right(box, truth)))
        if shapes is not None:
            features.append(confidence_features(classical, learned, box, shapes[i], best.rim_margin))
    model = fit_confidence_model(features, [not right for _, _, right in outcomes]) if shapes is not None else None
    splits = fit_confidence_splits(outcomes) if model is None else {}
    fields = {**best.as_dict(), "confidence": confidence, "confidence_splits": splits, "confidence_model": model}
    if model is not None:  # flag the photos more likely wrong than the average training photo
        fields["review_below"] = round(1.0 - model["wrong"] / model["photos"], 4)
    return FusionRule(**fields), result


class FusionDetector:
    """``fusion`` backend: classical + the learned ONNX model, combined by a fitted ``FusionRule``."""

    name = "fusion"

    def __init__(
        self,
        weights: str | Path | None = None,
        rule: str | Path | None = None,
        learned_conf: float = 0.01,
        **classical_params,
    ):
        from bioscan_rebuild.detect.classical import ClassicalDetector
        from bioscan_rebuild.detect.yolo.backends import OnnxDetector

        self.classical = ClassicalDetector(**classical_params)
        self.rule = FusionRule.load(rule)
        fitted = FusionRule.fitted_on(rule)["classical"]
        running = self.classical.params()
        differ = [key for key in CLASSICAL_SCORE_UNITS if score_units(fitted.get(key)) != score_units(running[key])]
        if differ:
            raise InputError(
                f"the fusion rule {rule or '(shipped)'} was fitted with the classical detector's "
                f"{', '.join(f'{k}={fitted.get(k)!r}' for k in differ)}, this one runs with "
                f"{', '.join(f'{k}={running[k]!r}' for k in differ)}: its thresholds are in the other score units. "
                "Refit the rule for this detector: bioscan-rebuild refit-fusion "
                "(with --out-of-fold, if it was fitted so)"
            )
        # the rule was fitted on the learned model's boxes with or without TTA: run it the same way
        self.learned = OnnxDetector(weights, conf=learned_conf, tta=self.rule.learned_tta)
        problem = rule_model_problem(FusionRule.fitted_on(rule), self.learned.sha256)
        if problem:
            raise InputError(f"the fusion rule {rule or '(shipped)'} for {self.learned.weights}: {problem}")

    def params(self) -> dict:
        return {
            "backend": self.name,
            "version": VERSION,
            "classical": self.classical.params(),
            "learned": self.learned.params(),
            "rule": self.rule.as_dict(),
        }

    def detect(self, image: np.ndarray) -> Detection:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray], halves: list[np.ndarray] | None = None) -> list[Detection]:
        classical = self.classical.detect_batch(images, halves)
        learned = self.learned.detect_batch(images)
        return [fuse(c, y, self.rule, im.shape[:2]) for c, y, im in zip(classical, learned, images, strict=True)]
