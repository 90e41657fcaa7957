"""The held-out scoring of the detectors: the fusion fit with and without the learned model's TTA."""

from __future__ import annotations

from bioscan_rebuild.detect.base import Detection
from bioscan_rebuild.detect.heldout import backend_detections, fit_fusion, score_table

TRUTH, WRONG = (100, 100, 200, 200), (600, 500, 700, 600)


def _det(box, score):
    return Detection("ok" if box else "no_object", box, score=score if box else 0.0, candidates=int(bool(box)))


def _row(half, truth, classical, learned, learned_tta):
    return {
        "folder": "dev",
        "file_name": f"{len(str(truth))}.jpg",
        "half": half,
        "image_class": "valid",
        "truth": truth,
        "polygon_area": None,
        "shape": (768, 1024),
        "classical": classical,
        "learned": learned,
        "learned_tta": learned_tta,
    }


def _rows(tta_better: bool):
    """Specimens the classical detector misses; the learned model finds them in every photo with one of its
    two runs (TTA or not) and in half of them with the other."""
    rows = []
    for half in ("train", "holdout"):
        for i in range(20):
            good, flaky = _det(TRUTH, 0.8), _det(TRUTH if i % 2 else WRONG, 0.8)
            pair = (flaky, good) if tta_better else (good, flaky)
            rows.append(_row(half, TRUTH, _det(WRONG, 150.0), *pair))
        for _ in range(5):
            rows.append(_row(half, None, _det(None, 0), _det(None, 0), _det(None, 0)))
    return rows


def test_the_fit_takes_tta_only_when_it_fits_the_train_half_better():
    rule, fit = fit_fusion(_rows(tta_better=True))
    assert rule.learned_tta is True and fit["specimens_right"] == 1.0
    rule, fit = fit_fusion(_rows(tta_better=False))
    assert rule.learned_tta is False and fit["specimens_right"] == 1.0
    same = [{**r, "learned_tta": r["learned"]} for r in _rows(tta_better=False)]
    assert fit_fusion(same)[0].learned_tta is False  # a tie keeps the plain model (a quarter of the work)
    plain_only = [{k: v for k, v in r.items() if k != "learned_tta"} for r in _rows(tta_better=True)]
    rule, fit = fit_fusion(plain_only)
    assert rule.learned_tta is False and fit["specimens_right"] == 0.5


def test_the_table_scores_onnx_with_tta_and_the_fusion_on_the_learned_run_its_rule_names():
    rows = _rows(tta_better=True)
    rule, _ = fit_fusion(rows)
    table = score_table(rows, rule, "holdout")
    assert table["onnx"]["all"]["iou_ge_0.5"] == 0.5 and table["onnx_tta"]["all"]["iou_ge_0.5"] == 1.0
    assert table["fusion"]["all"]["iou_ge_0.5"] == 1.0 and table["fusion"]["all"]["empty_recognised"] == 1.0
    assert table["oracle"]["all"]["iou_ge_0.5"] == 1.0
    detections = backend_detections(rows[0], rule)  # i = 0: the plain run has the wrong box
    assert detections["fusion"].box == TRUTH == detections["onnx_tta"].box != detections["onnx"].box
