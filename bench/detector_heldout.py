"""Every detector backend on the held-out half of the real hard cases (imgfilter-dev + imgfilter-more).

    python bench/detector_heldout.py [--onnx MODEL.onnx] [--rule fusion.json | --refit] [--json OUT.json]

Defaults: the shipped model and fusion rule (``detect/models/``). ``--refit`` fits the fusion rule on the train
half here instead (as ``train-detector`` does). Prints, for the holdout half: per backend (classical, onnx,
onnx_tta (with test-time augmentation), fusion, and the oracle ceiling: per photo the best of the boxes the fusion
chooses among, the classical one, the learned one at its low bar, their mean and its own answer) the mean IoU,
IoU >= 0.5,
IoU >= 0.75 and empty wells recognised, overall and per image class; the review queue (photos flagged, and how
many of the fusion's wrong answers are among them); the ceiling of the rule's form (the rule
fitted on the holdout half itself: no rule fitted elsewhere beats it); then ms per photo of each detector
(detection only, one thread, decoding excluded).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

import cv2  # noqa: E402

from bioscan_rebuild.detect.classical import ClassicalDetector  # noqa: E402
from bioscan_rebuild.detect.fusion import FusionRule  # noqa: E402
from bioscan_rebuild.detect.heldout import (  # noqa: E402
    LEARNED_LOW_BAR,
    cross_validated_confidence,
    fit_fusion,
    read_classes,
    review_table,
    run_detectors,
    score_table,
)
from bioscan_rebuild.detect.yolo.backends import OnnxDetector  # noqa: E402

REALDATA = REPO.parent / "shared" / "realdata"
METRICS = [("mean_iou", "{:.3f}"), ("iou_ge_0.5", "{:.1%}"), ("iou_ge_0.75", "{:.1%}")]


def _cell(summary: dict, key: str, fmt: str) -> str:
    value = summary.get(key)
    return "-" if value is None else fmt.format(value)


def print_table(table: dict) -> None:
    groups = sorted({g for backend in table.values() for g in backend}, key=lambda g: (g != "all", g))
    header = "| backend | class | specimens | empty wells | mean IoU | IoU>=.5 | IoU>=.75 | empty recognised |"
    print(header)
    print("|" + "---|" * 8)
    for group in groups:
        for name, per_group in table.items():
            s = per_group.get(group)
            if s is None:
                continue
            cells = [_cell(s, key, fmt) for key, fmt in METRICS]
            empty = _cell(s, "empty_recognised", "{:.1%}")
            print(f"| {name} | {group} | {s['specimens']} | {s['empty_wells']} | {' | '.join(cells)} | {empty} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", help="the learned model (default: the shipped one)")
    ap.add_argument("--rule", help="fusion rule JSON (default: the shipped one)")
    ap.add_argument("--refit", action="store_true", help="fit the fusion rule on the train half here")
    ap.add_argument("--dev-dir", action="append", type=Path, help="COCO dev sets (default: imgfilter-dev, -more)")
    ap.add_argument("--classes", type=Path, default=REALDATA / "imgfilter-classes.csv")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    dev_dirs = args.dev_dir or [REALDATA / "imgfilter-dev", REALDATA / "imgfilter-more"]
    detectors = {
        "classical": ClassicalDetector(),
        "learned": OnnxDetector(args.onnx, conf=LEARNED_LOW_BAR, threads=1),
        "learned_tta": OnnxDetector(args.onnx, conf=LEARNED_LOW_BAR, threads=1, tta=True),
    }
    rows, seconds = run_detectors(dev_dirs, detectors, read_classes(args.classes))
    if args.refit:
        rule, fit = fit_fusion(rows)
        print(f"fitted on the train half ({fit['photos']} photos): {json.dumps(rule.as_dict(), sort_keys=True)}")
    else:
        rule = FusionRule.load(args.rule)
    halves = {half: sum(r["half"] == half for r in rows) for half in ("train", "holdout")}
    print(f"photos: {len(rows)} ({halves['train']} train, {halves['holdout']} holdout); scored: holdout\n")
    table = score_table(rows, rule, "holdout")
    print_table(table)
    review = review_table(rows, rule, "holdout")
    print(
        f"\nreview queue (fusion): {review['flagged']} of {review['photos']} photos flagged "
        f"({review['flagged'] / review['photos']:.1%}); {review['wrong_flagged']} of its {review['wrong']} wrong "
        f"answers flagged ({review['wrong_flagged'] / max(1, review['wrong']):.1%}); per reason (flagged, wrong): "
        + ", ".join(f"{k} {v['flagged']}/{v['wrong']}" for k, v in review["per_reason"].items())
    )
    print(
        "ranked by confidence: wrong answers among the least confident "
        + ", ".join(f"{float(share):.0%} {wrong}" for share, wrong in review["least_confident"].items())
        + f"; AUC {review['confidence_auc']}; once a person corrects the flagged photos: "
        + ", ".join(f"{kind} {share:.1%} right" for kind, share in review["after_review"].items() if share is not None)
    )
    crossed = cross_validated_confidence(rows, rule.learned_tta)
    print(
        f"confidence inside the train half, 5-fold cross-validated ({crossed['photos']} photos): AUC of the "
        f"confidence model {crossed['model']}, of per-situation confidences {crossed['situations']} "
        f"(wrong answers: {crossed['wrong']['model']})"
    )
    _, ceiling = fit_fusion(rows, half="holdout")
    ceiling = {k: round(ceiling[k], 4) for k in ("specimens_right", "empty_right")}
    print(
        f"\nceiling of the rule's form (a rule fitted on the holdout half itself; not a score): specimens "
        f"{ceiling['specimens_right']:.1%} boxed, empty wells {ceiling['empty_right']:.1%} recognised"
    )
    ms = {name: round(1000 * s / len(rows), 2) for name, s in seconds.items()}
    ms["fusion"] = round(ms["classical"] + ms["learned_tta" if rule.learned_tta else "learned"], 2)
    print(f"\nms per photo (detection only, 1 thread): {json.dumps(ms)}")
    if args.json:
        payload = {
            "holdout": table,
            "review": review,
            "ms_per_photo": ms,
            "rule": rule.as_dict(),
            "rule_ceiling": ceiling,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
