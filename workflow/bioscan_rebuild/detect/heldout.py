"""Every backend on the real hard cases, the fusion rule fitted on their training half, and the held-out scores.

The real dev sets (the project's hard cases, ``imgfilter-dev`` and ``imgfilter-more``: COCO boxes drawn by hand) are
split once and for all by ``evaluate.dev_split`` (md5 of the processid): the ``train`` half may be trained and
tuned on, the ``holdout`` half only scored. ``run_detectors`` runs the classical detector and the learned
model (at a low bar, so the fusion sees its weak boxes too; ``learned_tta``: also with test-time augmentation)
once per photo; ``fit_fusion`` fits the rule on the train half (with and without TTA when both ran: the better
fit wins); ``score_table`` scores every backend on a half: ``classical``, ``onnx`` (the learned model at its
default bar; ``onnx_tta`` the same with TTA), ``fusion``, and ``oracle`` (per photo the best of the boxes the
fusion chooses among: the classical one, the learned one at its low bar, their mean and its own answer; for an
empty well, no box where any of them gives none: a ceiling of the fusion's choice, not a backend), overall and
per image class of ``imgfilter-classes.csv``.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from bioscan_rebuild.detect.base import Detection
from bioscan_rebuild.detect.evaluate import dev_fold, dev_split, iou, load_coco_ground_truth, load_rgb, summarize
from bioscan_rebuild.detect.fusion import (
    REVIEW_REASONS,
    RIGHT_IOU,
    FusionRule,
    fit_rule,
    fuse,
    has_box,
    mean_box,
    rule_key,
)

LEARNED_LOW_BAR = 0.01  # the fusion sees every box the model scores above this
ONNX_DEFAULT_CONF = 0.25  # the onnx backend's own bar (OnnxDetector's default)


def read_classes(path: str | Path | None) -> dict[tuple[str, str], str]:
    """(folder name, file name) -> image class, from imgfilter-classes.csv (empty without the file)."""
    if not path or not Path(path).is_file():
        return {}
    with open(path, newline="") as handle:
        return {(row["folder"], row["file_name"]): row["imgfilter_class"] for row in csv.DictReader(handle)}


def run_detectors(
    dev_dirs, detectors: dict, classes: dict | None = None, batch: int = 16, wanted: dict | None = None
) -> tuple[list, dict]:
    """(rows, seconds): per photo of the dev sets its folder, file_name, processid, half, image class, truth box,
    size and each detector's Detection; per detector its total time (detection only, decoding excluded).
    ``wanted``: detector name -> predicate of the processid; such a detector runs only on the photos it accepts
    (the others' rows hold None for it)."""
    rows, seconds = [], dict.fromkeys(detectors, 0.0)
    wanted = wanted or {}
    for dev_dir in [Path(d) for d in dev_dirs]:
        truths = load_coco_ground_truth(dev_dir / "coco_annotations.json")
        for start in range(0, len(truths), batch):
            chunk = truths[start : start + batch]
            images = [load_rgb(dev_dir / t.file_name) for t in chunk]
            found = {}
            for name, detector in detectors.items():
                accepts = wanted.get(name)
                picked = [i for i, t in enumerate(chunk) if accepts is None or accepts(t.processid)]
                t0 = time.perf_counter()
                detections = detector.detect_batch([images[i] for i in picked]) if picked else []
                seconds[name] += time.perf_counter() - t0
                found[name] = [None] * len(chunk)
                for i, detection in zip(picked, detections, strict=True):
                    found[name][i] = detection
            for i, truth in enumerate(chunk):
                rows.append(
                    {
                        "folder": dev_dir.name,
                        "file_name": truth.file_name,
                        "processid": truth.processid,
                        "half": dev_split(truth.processid),
                        "image_class": (classes or {}).get((dev_dir.name, truth.file_name), "unlabelled"),
                        "truth": truth.box,
                        "polygon_area": truth.polygon_area,
                        "shape": images[i].shape[:2],
                        **{name: found[name][i] for name in detectors},
                    }
                )
    return rows, seconds


LEARNED_KEYS = ("learned", "learned_tta")


def fold_key(name: str, fold: int) -> str:
    """The row key of a detection by the model that left out ``fold`` (``learned@0``): see ``out_of_fold``."""
    return f"{name}@{fold}"


def out_of_fold(rows: list[dict], folds: int) -> list[dict]:
    """The rows with each train-half photo's learned detections (``learned``, ``learned_tta``) taken from the
    model trained without the photo's part (``evaluate.dev_fold``; the row keys ``fold_key(name, fold)``), so
    that the rule is fitted, and its confidences measured, on photos the model never saw, as on new ones. The
    holdout half keeps the full model's detections. Every train-half row must hold its part's detections."""
    out = []
    for row in rows:
        kept = {key: value for key, value in row.items() if "@" not in key}
        if row["half"] == "train":
            fold = dev_fold(row["processid"], folds)
            for name in LEARNED_KEYS:
                if name in row:
                    if row.get(fold_key(name, fold)) is None:
                        raise ValueError(f"{row['file_name']}: no {fold_key(name, fold)} detection (part {fold})")
                    kept[name] = row[fold_key(name, fold)]
        out.append(kept)
    return out


def fit_fusion(rows: list[dict], half: str = "train") -> tuple[FusionRule, dict]:
    """The rule fitted on the train half of ``run_detectors``' rows (keys ``classical`` and ``learned``, and
    ``learned_tta`` when the model also ran with TTA: then the better of the two fits, by ``rule_key``; a tie
    keeps the plain model, a quarter of the work). ``half="holdout"`` gives the ceiling of the rule's form on
    the held-out half (the rule fitted on the photos it is scored on): what no rule fitted elsewhere can beat,
    so a target above it needs better detectors, not another rule."""
    fits = []
    for tta in (False, True) if rows and "learned_tta" in rows[0] else (False,):
        learned = "learned_tta" if tta else "learned"
        chosen = [r for r in rows if r["half"] == half]
        samples = [(r["classical"], r[learned], r["truth"]) for r in chosen]
        rule, result = fit_rule(samples, learned_tta=tta, shapes=[r["shape"] for r in chosen])
        fits.append((rule, {"photos": len(samples), **result}))
    return max(fits, key=lambda fit: rule_key(fit[1]))  # max keeps the first of equals


def _at_bar(detection: Detection, conf: float) -> Detection:
    """The learned detection as the onnx backend at bar ``conf`` reports it (its top box, if it clears)."""
    if has_box(detection) and detection.score > conf:
        return detection
    return Detection("no_object", None, score=0.0)


def _eval_row(row: dict, detection: Detection) -> dict:
    overlap = iou(row["truth"], detection.box) if (row["truth"] and has_box(detection)) else 0.0
    return {
        "file_name": row["file_name"],
        "empty_truth": row["truth"] is None,
        "status": detection.status if has_box(detection) else "no_object",
        "iou": overlap,
        "box": detection.box,
        "truth_box": row["truth"],
        "pixel_count": detection.pixel_count,
        "polygon_area": row["polygon_area"],
    }


def backend_detections(row: dict, rule: FusionRule | None) -> dict[str, Detection]:
    out = {"classical": row["classical"], "onnx": _at_bar(row["learned"], ONNX_DEFAULT_CONF)}
    if "learned_tta" in row:
        out["onnx_tta"] = _at_bar(row["learned_tta"], ONNX_DEFAULT_CONF)
    tta = rule is not None and rule.learned_tta
    if tta and "learned_tta" not in row:
        raise ValueError("the rule runs the learned model with TTA, but these rows hold no TTA run (learned_tta)")
    if rule is not None:
        out["fusion"] = fuse(row["classical"], row["learned_tta" if tta else "learned"], rule, row["shape"])
    # the ceiling of choosing among the boxes the fusion sees: the classical one, the learned one at the fusion's
    # low bar, their mean (the learned box at the onnx bar alone missed boxes the fusion takes: the fusion beat
    # it on 4 held-out specimens), and the fusion's own answer (so that it can never beat its ceiling). An empty
    # well is right where either backend alone or the fusion reports none.
    learned = row["learned_tta" if tta else "learned"]
    candidates = [row["classical"], learned, out["onnx_tta" if tta else "onnx"], *([out["fusion"]] if rule else [])]
    if has_box(row["classical"]) and has_box(learned):
        mean = mean_box(row["classical"].box, learned.box)  # the pixels the fusion counts for it: the classical's
        candidates.append(Detection("ok", mean, row["classical"].pixel_count, score=learned.score))
    if row["truth"] is None:
        out["oracle"] = next((d for d in candidates if not has_box(d)), candidates[0])
    else:
        out["oracle"] = max(candidates, key=lambda d: iou(row["truth"], d.box) if has_box(d) else -1.0)
    return out


def score_table(rows: list[dict], rule: FusionRule | None, half: str = "holdout") -> dict:
    """backend -> {"all": summary, "<image class>": summary, ...} on one half."""
    chosen = [r for r in rows if half == "all" or r["half"] == half]
    per_backend: dict[str, dict[str, list]] = {}
    for row in chosen:
        for name, detection in backend_detections(row, rule).items():
            groups = per_backend.setdefault(name, {})
            for group in ("all", row["image_class"]):
                groups.setdefault(group, []).append(_eval_row(row, detection))
    return {
        name: {group: summarize(rows_, 0.0) for group, rows_ in sorted(groups.items())}
        for name, groups in per_backend.items()
    }


def is_wrong(row: dict, fused: Detection) -> bool:
    """A specimen without a box at IoU >= RIGHT_IOU, or an empty well given a box."""
    return _eval_row(row, fused)["iou"] < RIGHT_IOU if row["truth"] else has_box(fused)


SHARES = ("0.1", "0.25", "0.5")  # review_table's least confident shares of the photos (its JSON keys)


def least_confident_wrong(ranked: list[tuple[float, bool]], count: int) -> float:
    """The wrong answers among the ``count`` least confident photos (``ranked``: confidence, wrong), where photos
    of equal confidence straddle the cut counting in proportion (the expected number over their orders), so that
    the figure does not depend on the photos' order. Rounded to 2 places."""
    total, taken = 0.0, 0
    for confidence in sorted({c for c, _ in ranked}):
        if taken >= count:
            break
        tied = [wrong for c, wrong in ranked if c == confidence]
        room = min(len(tied), count - taken)
        total += sum(tied) * room / len(tied)
        taken += room
    return round(total, 2)


def review_table(rows: list[dict], rule: FusionRule, half: str = "holdout") -> dict:
    """How well the fusion's review queue points at its own mistakes on one half: photos, those flagged, the
    wrong answers (``is_wrong``) and how many of them are flagged; per reason, the photos flagged for it and the
    wrong ones among them. How well the confidence ranks them: ``least_confident``, the wrong answers among the
    least confident tenth, quarter and half of the photos (``least_confident_wrong``: ties at the cut count in
    proportion), and ``confidence_auc``, the chance that a wrong answer has a lower confidence than a right one
    (ties count half). ``after_review``: the shares of specimens boxed and empty wells recognised once a person
    has corrected every flagged photo."""
    table = {"photos": 0, "flagged": 0, "wrong": 0, "wrong_flagged": 0}
    per_reason = {reason: {"flagged": 0, "wrong": 0} for reason in REVIEW_REASONS}
    ranked = []  # (confidence, wrong) per photo
    after = {"specimens": [0, 0], "empty_wells": [0, 0]}  # kind -> [right once flagged ones are corrected, photos]
    for row in rows:
        if half != "all" and row["half"] != half:
            continue
        fused = backend_detections(row, rule)["fusion"]
        wrong = is_wrong(row, fused)
        ranked.append((float(fused.score), bool(wrong)))
        kind = after["specimens" if row["truth"] else "empty_wells"]
        kind[0] += int(not wrong or bool(fused.review))
        kind[1] += 1
        table["photos"] += 1
        table["wrong"] += int(wrong)
        if fused.review:
            table["flagged"] += 1
            table["wrong_flagged"] += int(wrong)
        for reason in fused.review:
            per_reason[reason]["flagged"] += 1
            per_reason[reason]["wrong"] += int(wrong)
    least = {share: least_confident_wrong(ranked, round(float(share) * len(ranked))) for share in SHARES}
    auc = confidence_auc(ranked)
    after_review = {kind: right / photos if photos else None for kind, (right, photos) in after.items()}
    return {
        **table,
        "per_reason": per_reason,
        "least_confident": least,
        "confidence_auc": auc,
        "after_review": after_review,
    }


def confidence_auc(ranked: list[tuple[float, bool]]) -> float | None:
    """The chance that a wrong answer is less confident than a right one (``ranked``: confidence, wrong; ties
    count half); None without both kinds."""
    wrong_scores = [c for c, w in ranked if w]
    right_scores = [c for c, w in ranked if not w]
    pairs = len(wrong_scores) * len(right_scores)
    if not pairs:
        return None
    below = sum((w < r) + 0.5 * (w == r) for w in wrong_scores for r in right_scores)
    return round(below / pairs, 4)


def cross_validated_confidence(rows: list[dict], learned_tta: bool, folds: int = 5, half: str = "train") -> dict:
    """How well each kind of confidence ranks the fusion's mistakes on photos its rule was not fitted on, inside
    one half: per part (``evaluate.dev_fold``) the rule is fitted on the other parts, once with the confidence
    model (the photos' shapes given) and once with per-situation confidences, and its answers for the left-out
    part are ranked. Returns {"model": AUC, "situations": AUC} over every left-out photo, and the wrong ones."""
    learned = "learned_tta" if learned_tta else "learned"
    chosen = [r for r in rows if r["half"] == half]
    ranked = {"model": [], "situations": []}
    for fold in range(folds):
        fit_rows = [r for r in chosen if dev_fold(r["processid"], folds) != fold]
        samples = [(r["classical"], r[learned], r["truth"]) for r in fit_rows]
        rules = {
            "model": fit_rule(samples, learned_tta=learned_tta, shapes=[r["shape"] for r in fit_rows])[0],
            "situations": fit_rule(samples, learned_tta=learned_tta)[0],
        }
        for row in (r for r in chosen if dev_fold(r["processid"], folds) == fold):
            for kind, rule in rules.items():
                fused = fuse(row["classical"], row[learned], rule, row["shape"])
                wrong = is_wrong(row, fused)
                ranked[kind].append((float(fused.score), bool(wrong)))
    return {
        **{kind: confidence_auc(pairs) for kind, pairs in ranked.items()},
        "photos": len(chosen),
        "wrong": {kind: sum(w for _, w in pairs) for kind, pairs in ranked.items()},
    }


def write_rule(rule: FusionRule, fit: dict, path: str | Path, provenance: dict) -> None:
    payload = {"rule": rule.as_dict(), "fitted_on": provenance, "train_score": {k: fit[k] for k in fit}}
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
