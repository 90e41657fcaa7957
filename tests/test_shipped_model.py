"""The detector model that ships with the package (detect/models/): consistent files, the onnx backend in the
light install (no torch, no ultralytics), and the fusion backend on real held-out photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bioscan_rebuild.core.io import file_sha256
from bioscan_rebuild.detect.shipped import FUSION_RULE, MODEL, MODEL_CARD, shipped
from conftest import REPO


def test_the_model_its_rule_and_its_card_belong_together():
    model, rule, card = shipped(MODEL), shipped(FUSION_RULE), shipped(MODEL_CARD)
    assert model.is_file() and rule.is_file() and card.is_file()
    sha = file_sha256(model)
    fitted = json.loads(rule.read_text())
    assert fitted["fitted_on"]["model_sha256"] == sha  # the rule was fitted on this very model
    assert fitted["fitted_on"]["half"] == "train"  # never on the held-out half
    text = card.read_text()
    assert sha in text and "CC BY-NC-SA" in text and "holdout" in text
    assert os.path.getsize(model) < 20 * 2**20  # a nano model: it ships inside the wheel


def test_the_onnx_backend_runs_without_torch_or_ultralytics(realdata, tmp_path):
    """The light install: the shipped model on onnxruntime, with torch and ultralytics made unimportable."""
    photos = sorted((realdata / "imgfilter-dev").glob("*.jpg"))[:4]
    assert len(photos) == 4
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos:
        (folder / photo.name).symlink_to(photo)
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['ultralytics'] = None\n"
        "from bioscan_rebuild.cli.main import main\n"
        f"sys.exit(main(['detect', {str(folder)!r}, {str(tmp_path / 'out.csv')!r}, '--backend', 'onnx']))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 and all(
        line.split(",")[1] in ("ok", "no_object", "multiple_candidates", "touches_edge") for line in lines[1:]
    )


def test_the_fusion_backend_on_held_out_real_photos(realdata):
    """On held-out hard cases the fusion backend returns a confidence from the shipped rule and its reasons."""
    from bioscan_rebuild.detect.evaluate import dev_split, load_coco_ground_truth, load_rgb
    from bioscan_rebuild.detect.fusion import REVIEW_REASONS, FusionRule
    from bioscan_rebuild.detect.registry import make_detector

    dev = realdata / "imgfilter-more"
    truths = [t for t in load_coco_ground_truth(dev / "coco_annotations.json") if dev_split(t.processid) == "holdout"]
    chosen = truths[:8]
    detector = make_detector("fusion")
    found = detector.detect_batch([load_rgb(dev / t.file_name) for t in chosen])
    confidences = set(FusionRule.load().confidence.values())
    assert len(found) == 8
    for detection in found:
        assert detection.score in confidences
        assert set(detection.review) <= set(REVIEW_REASONS)
        assert (detection.box is None) == (detection.status == "no_object")


def _trained_folder(folder, model=b"onnx bytes", fitted_sha=None, half="train", card_sha=None):
    import hashlib

    folder.mkdir()
    (folder / "model.onnx").write_bytes(model)
    sha = hashlib.sha256(model).hexdigest()
    rule = {"rule": {}, "fitted_on": {"model_sha256": fitted_sha or sha, "half": half}}
    (folder / "fusion.json").write_text(json.dumps(rule))
    (folder / "MODEL_CARD.md").write_text(f"# card\nsha256 {card_sha or sha}\n")
    return sha


def test_ship_copies_the_three_files_that_belong_together(tmp_path):
    from bioscan_rebuild.detect.shipped import ship

    sha = _trained_folder(tmp_path / "trained")
    written = ship(tmp_path / "trained", tmp_path / "models")
    assert written[MODEL] == sha
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted([MODEL, FUSION_RULE, MODEL_CARD])
    assert (tmp_path / "models" / MODEL).read_bytes() == b"onnx bytes"


@pytest.mark.parametrize(
    "kind, match",
    [
        ({"fitted_sha": "0" * 64}, "not fitted on this model"),
        ({"half": None}, "not fitted on this model"),
        ({"half": "holdout"}, "not fitted on this model"),
        ({"card_sha": "f" * 64}, "does not describe this model"),
    ],
)
def test_ship_refuses_a_rule_or_card_of_another_model(tmp_path, kind, match):
    from bioscan_rebuild.detect.shipped import ship

    _trained_folder(tmp_path / "trained", **kind)
    with pytest.raises(ValueError, match=match):
        ship(tmp_path / "trained", tmp_path / "models")
    assert not (tmp_path / "models").exists()  # nothing half-shipped


def test_ship_names_the_missing_files(tmp_path):
    from bioscan_rebuild.detect.shipped import ship

    _trained_folder(tmp_path / "trained")
    (tmp_path / "trained" / "fusion.json").unlink()
    with pytest.raises(FileNotFoundError, match="fusion.json"):
        ship(tmp_path / "trained", tmp_path / "models")


def test_merge_passes_fuses_overlapping_boxes_and_penalises_a_box_few_passes_see():
    import numpy as np

    from bioscan_rebuild.detect.yolo.backends import merge_passes

    passes = [
        (np.array([[100, 100, 200, 200], [500, 500, 520, 520]]), np.array([0.8, 0.6])),
        (np.array([[110, 100, 210, 200]]), np.array([0.4])),  # the same object, shifted; the speck unseen
    ]
    boxes, scores = merge_passes(passes)
    # score-weighted mean: x0 = (100 * 0.8 + 110 * 0.4) / 1.2; scores averaged over both passes
    np.testing.assert_allclose(boxes[0], [(100 * 0.8 + 110 * 0.4) / 1.2, 100, (200 * 0.8 + 210 * 0.4) / 1.2, 200])
    np.testing.assert_allclose(scores, [0.6, 0.3])
    np.testing.assert_allclose(boxes[1], [500, 500, 520, 520])
    # two boxes of the same pass are never one object (nor counted twice): one per pass per object
    boxes, scores = merge_passes(
        [
            (np.array([[0, 0, 10, 10], [0, 0, 10, 11]]), np.array([0.9, 0.5])),
            (np.array([[0, 0, 10, 10]]), np.array([0.8])),
        ]
    )
    np.testing.assert_allclose(scores, [0.85, 0.25])
    np.testing.assert_allclose(boxes[1], [0, 0, 10, 11])
    empty = merge_passes([(np.zeros((0, 4)), np.zeros(0))] * 4)
    assert empty[0].shape == (0, 4) and empty[1].shape == (0,)


def test_tta_answers_a_mirrored_photo_with_the_mirrored_box(realdata):
    """The four passes of a mirrored photo are the four passes of the photo, mirrored: the merged box must
    mirror too (to a pixel), and TTA must report itself in the parameters (the image stage's key)."""
    from bioscan_rebuild.detect.evaluate import load_coco_ground_truth, load_rgb
    from bioscan_rebuild.detect.yolo.backends import OnnxDetector

    dev = realdata / "imgfilter-dev"
    truths = [t for t in load_coco_ground_truth(dev / "coco_annotations.json") if t.box][:6]
    plain, tta = OnnxDetector(conf=0.01), OnnxDetector(conf=0.01, tta=True)
    assert "tta" in tta.params() and "tta" not in plain.params()
    images = [load_rgb(dev / t.file_name) for t in truths]
    found = tta.detect_batch(images)
    mirrored = tta.detect_batch([im[:, ::-1] for im in images])
    assert sum(d.box is not None for d in found) >= 5
    for image, a, b in zip(images, found, mirrored, strict=True):
        assert (a.box is None) == (b.box is None)
        if a.box is None:
            continue
        width = image.shape[1]
        expected = (width - a.box[2], a.box[1], width - a.box[0], a.box[3])
        assert max(abs(u - v) for u, v in zip(b.box, expected)) <= 1
        assert abs(a.score - b.score) < 1e-3


def test_tta_reports_no_box_at_or_below_its_bar(realdata):
    """Each pass keeps weak boxes for the merge, but the backend's bar applies to the merged scores."""
    from bioscan_rebuild.detect.evaluate import load_coco_ground_truth, load_rgb
    from bioscan_rebuild.detect.yolo.backends import OnnxDetector

    dev = realdata / "imgfilter-more"
    images = [load_rgb(dev / t.file_name) for t in load_coco_ground_truth(dev / "coco_annotations.json")[:8]]
    low = OnnxDetector(conf=0.01, tta=True).detect_batch(images)
    assert any(d.box is not None and d.score <= 0.5 for d in low)  # the bar below matters for these photos
    for strict, loose in zip(OnnxDetector(conf=0.5, tta=True).detect_batch(images), low, strict=True):
        assert strict.box is None or strict.score > 0.5
        if loose.box is not None and loose.score > 0.5:  # the same merge, then the bar: the same top box
            assert (strict.box, strict.score) == (loose.box, loose.score)
        else:
            assert strict.box is None
