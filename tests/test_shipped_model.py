"""The detector model that ships with the package (detect/models/): consistent files, the onnx backend in the
light install (no torch, no ultralytics), and the fusion backend on real held-out photos."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bioscan_rebuild.core.io import file_sha256
from bioscan_rebuild.detect.shipped import FUSION_RULE, MODEL, MODEL_CARD, TRAINING_REPORT, shipped
from conftest import REPO


def test_the_model_its_rule_its_card_and_its_report_belong_together():
    model, rule, card, report = (shipped(name) for name in (MODEL, FUSION_RULE, MODEL_CARD, TRAINING_REPORT))
    assert model.is_file() and rule.is_file() and card.is_file() and report.is_file()
    sha = file_sha256(model)
    fitted = json.loads(rule.read_text())
    assert fitted["fitted_on"]["model_sha256"] == sha  # the rule was fitted on this very model
    assert fitted["fitted_on"]["half"] == "train"  # never on the held-out half
    text = card.read_text()
    assert sha in text and "CC BY-NC-SA" in text and "holdout" in text
    assert os.path.getsize(model) < 20 * 2**20  # a nano model: it ships inside the wheel
    trained = json.loads(report.read_text())  # what refit-fusion needs to fit the rule again
    assert trained["onnx"]["sha256"] == sha and trained["fusion"]["rule"] == fitted["rule"]
    assert trained["command"] in text and trained["fusion_refit"] in text


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
    rule = FusionRule.load()
    confidences = rule.confidence_levels()  # None: a confidence model gives each photo its own
    assert len(found) == 8
    for detection in found:
        assert detection.score in confidences if confidences is not None else 0.0 <= detection.score <= 1.0
    if rule.confidence_model is not None:  # the confidence is the rule's model on the photo's measurements
        from bioscan_rebuild.detect.fusion import chosen_box, confidence_features, decide, model_confidence

        for truth, detection in zip(chosen, found, strict=True):
            image = load_rgb(dev / truth.file_name)
            classical, learned = detector.classical.detect(image), detector.learned.detect(image)
            box = chosen_box(decide(classical, learned, rule)[1], classical, learned)
            features = confidence_features(classical, learned, box, image.shape[:2], rule.rim_margin)
            assert detection.score == model_confidence(rule.confidence_model, features)
            assert ("low_confidence" in detection.review) == (detection.score < rule.review_below)
        assert set(detection.review) <= set(REVIEW_REASONS)
        assert (detection.box is None) == (detection.status == "no_object")


def _trained_folder(
    folder,
    model=b"onnx bytes",
    fitted_sha=None,
    half="train",
    card_sha=None,
    classical=None,
    report_sha=None,
    report_rule=None,
):
    import hashlib

    from bioscan_rebuild.detect.classical import ClassicalDetector

    folder.mkdir()
    (folder / "model.onnx").write_bytes(model)
    sha = hashlib.sha256(model).hexdigest()
    classical = ClassicalDetector().params() if classical is None else classical
    rule = {"rule": {"agree_iou": 0.4}, "fitted_on": {"model_sha256": fitted_sha or sha, "half": half}}
    rule["fitted_on"]["classical"] = classical
    (folder / "fusion.json").write_text(json.dumps(rule))
    (folder / "MODEL_CARD.md").write_text(f"# card\nsha256 {card_sha or sha}\n")
    report = {"onnx": {"sha256": report_sha or sha}, "fusion": {"rule": report_rule or rule["rule"]}}
    (folder / "report.json").write_text(json.dumps(report))
    return sha


def test_ship_copies_the_four_files_that_belong_together(tmp_path):
    from bioscan_rebuild.detect.shipped import ship

    sha = _trained_folder(tmp_path / "trained")
    written = ship(tmp_path / "trained", tmp_path / "models")
    assert written[MODEL] == sha
    shipped_names = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert shipped_names == sorted([MODEL, FUSION_RULE, MODEL_CARD, TRAINING_REPORT])
    assert (tmp_path / "models" / MODEL).read_bytes() == b"onnx bytes"


@pytest.mark.parametrize(
    "kind, match",
    [
        ({"fitted_sha": "0" * 64}, "fitted on the model of sha256 0+, not on this one"),
        ({"half": None}, "not fitted on a training half"),
        ({"half": "holdout"}, "not fitted on a training half"),
        ({"card_sha": "f" * 64}, "does not describe this model"),
        ({"classical": {}}, "another classical detector.*refit-fusion"),
        ({"classical": {"version": "classical-2"}}, "another classical detector"),
        ({"report_sha": "0" * 64}, "report.json does not describe this model"),
        ({"report_rule": {"agree_iou": 0.5}}, "report.json does not hold the fit"),
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


def test_a_photo_gets_the_same_answer_whatever_photos_share_its_batch(realdata):
    """The image stage batches the photos it has not cached yet, so a batch's make-up depends on the store: a
    portrait photo among landscape ones must not change how the landscape ones are letterboxed (a square instead
    of their own rectangle), nor their boxes and confidences, with or without TTA, nor through the fusion."""
    import numpy as np

    from bioscan_rebuild.detect.evaluate import load_rgb
    from bioscan_rebuild.detect.registry import make_detector
    from bioscan_rebuild.detect.yolo.backends import OnnxDetector

    images = [load_rgb(p) for p in sorted((realdata / "imgfilter-dev").glob("*.jpg"))[:6]]
    portrait = np.ascontiguousarray(np.rot90(images[0])[:768, :576])
    for detector in (OnnxDetector(conf=0.01), OnnxDetector(conf=0.01, tta=True), make_detector("fusion")):
        alone = [detector.detect_batch([image])[0] for image in images]
        mixed = detector.detect_batch([*images[:3], portrait, *images[3:]])
        assert [(d.box, d.score) for d in alone] == [(d.box, d.score) for d in mixed[:3] + mixed[4:]]
        assert mixed[3] == detector.detect_batch([portrait])[0]


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


def test_the_shipped_rule_was_fitted_with_the_default_classical_detector():
    """The rule's thresholds are in the classical detector's score units: a change of its defaults must come with
    a refitted rule (`bioscan-rebuild refit-fusion`)."""
    from bioscan_rebuild.detect.classical import ClassicalDetector
    from bioscan_rebuild.detect.fusion import FusionRule

    assert FusionRule.fitted_on()["classical"] == ClassicalDetector().params()


def _rule_fitted_with(tmp_path, **classical) -> str:
    from bioscan_rebuild.detect.classical import ClassicalDetector

    rule = json.loads(shipped(FUSION_RULE).read_text())
    rule["fitted_on"]["classical"] = {**ClassicalDetector().params(), **classical}
    if not classical:
        del rule["fitted_on"]["classical"]
    path = tmp_path / "fusion.json"
    path.write_text(json.dumps(rule))
    return str(path)


def test_the_fusion_backend_refuses_a_rule_fitted_with_another_classical_version(tmp_path):
    from bioscan_rebuild.detect.registry import make_detector

    with pytest.raises(ValueError, match=r"version='classical-2'.*refit-fusion"):
        make_detector("fusion", rule=_rule_fitted_with(tmp_path, version="classical-2"))
    # params a user tunes are theirs (they are in the detector's params): the rule still loads
    tuned = make_detector("fusion", rule=_rule_fitted_with(tmp_path, bar=75.0), bar=60.0)
    assert tuned.classical.params()["bar"] == 60.0
    # a rule from before the rule said (fitted_on without "classical") still loads, and so does one of
    # classical-3, whose scores classical-4's are (it only resamples photos of another size first)
    assert make_detector("fusion", rule=_rule_fitted_with(tmp_path)).rule == make_detector("fusion").rule
    assert make_detector("fusion", rule=_rule_fitted_with(tmp_path, version="classical-3")) is not None


def test_the_fusion_backend_refuses_a_rule_not_fitted_for_its_model(tmp_path):
    """Other weights under the shipped rule, a placeholder rule (fitted on nothing) or an out-of-fold model's rule
    would run with thresholds fitted elsewhere: refused, naming the fix."""
    from bioscan_rebuild.detect.registry import make_detector

    rule = json.loads(shipped(FUSION_RULE).read_text())
    for change, match in (
        ({"model_sha256": "0" * 64}, "not on this one.*images.detector.params.rule"),  # as other weights would be
        ({"half": None}, "not fitted on a training half"),
        ({"left_out_fold": 1}, "out-of-fold"),
    ):
        path = tmp_path / "rule.json"
        path.write_text(json.dumps({**rule, "fitted_on": {**rule["fitted_on"], **change}}))
        with pytest.raises(ValueError, match=match):
            make_detector("fusion", rule=str(path))
    path.write_text(json.dumps({"rule": {"trust_learned": 0.3}}))  # no fitted_on at all
    with pytest.raises(ValueError, match="not fitted on a training half"):
        make_detector("fusion", rule=str(path))


def test_a_malformed_fusion_rule_file_is_one_line_naming_it(tmp_path, capsys):
    """An unknown key, NaN, splits that are not objects or a split confidence outside [0, 1] (a photo got a
    confidence of 7: never flagged) ended in a traceback, or loaded."""
    from bioscan_rebuild.cli.main import main
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.detect.fusion import FusionRule

    good = json.loads(shipped(FUSION_RULE).read_text())
    split = {"feature": "agree_iou", "at": 0.6, "below": 7.0, "above": -3}
    for change, says in (
        ({"trust_lerned": 0.3}, "unknown keys ['trust_lerned']"),
        ({"agree_iou": float("nan")}, "agree_iou = nan is not a finite number"),
        ({"confidence_splits": [1, 2]}, "is not an object"),
        ({"confidence_splits": {"agree": "x"}}, "is not a valid split"),
        ({"confidence_splits": {"agree": split}}, "is not a valid split"),
    ):
        path = tmp_path / "rule.json"
        path.write_text(json.dumps({**good, "rule": {**good["rule"], **change}}))
        with pytest.raises(InputError, match=re.escape(f"{path}: not a usable fusion rule")) as error:
            FusionRule.load(path)
        assert says in str(error.value)
    path.write_text("{not json")
    assert (
        main(
            [
                "detect",
                str(tmp_path),
                str(tmp_path / "out.csv"),
                "--backend",
                "fusion",
                "--param",
                f"rule={json.dumps(str(path))}",
            ]
        )
        == 2
    )
    assert "not a usable fusion rule" in capsys.readouterr().err


def test_the_fusion_counts_organism_pixels_with_its_own_classical_settings():
    """The pixel count of a learned box comes from the fusion's own classical detector, tuned as the user tuned
    it (it used to be a default one beside it: two settings in one run, by which box was chosen)."""
    from bioscan_rebuild.detect.classical import ClassicalDetector
    from bioscan_rebuild.detect.registry import make_detector, make_segmenter

    tuned = make_detector("fusion", bar=60.0, mask_well=True)
    assert make_segmenter("fusion", tuned) is tuned.classical
    assert make_segmenter("onnx", make_detector("onnx")).params() == ClassicalDetector().params()
    assert make_segmenter("classical", make_detector("classical")) is None


def _small_dev_set(source, target, n: int = 24):
    """The first ``n`` photos of a real COCO dev set, linked into ``target`` with their annotations."""
    coco = json.loads((source / "coco_annotations.json").read_text())
    images = sorted(coco["images"], key=lambda image: image["file_name"])[:n]
    ids = {image["id"] for image in images}
    target.mkdir()
    for image in images:
        (target / image["file_name"]).symlink_to(source / image["file_name"])
    coco.update(images=images, annotations=[a for a in coco["annotations"] if a["image_id"] in ids])
    (target / "coco_annotations.json").write_text(json.dumps(coco))
    return target


def _train_report(onnx_sha: str, **extra) -> dict:
    """The fields of a train-detector report that the model card reads."""
    return {
        "model_yaml": "yolo11n.yaml",
        "train_args": {"imgsz": 320, "epochs": 130, "batch": 16, "seed": 0, "device": "cpu"},
        "device_name": "cpu",
        "train_seconds": 1.0,
        "weights_from": "best.pt",
        "weights": {"path": "weights.pt", "sha256": "0" * 64},
        "onnx": {"path": "model.onnx", "sha256": onnx_sha, "opset": 17},
        **extra,
    }


def test_refit_fusion_fits_the_rule_again_for_the_same_model(realdata, tmp_path, capsys):
    """A train-detector folder whose rule predates the classical detector it now runs with: refit-fusion writes a
    rule for this model and this detector, the report's scores and a card with the same command, and the folder
    then ships."""
    import shutil

    from bioscan_rebuild.cli.main import build_parser
    from bioscan_rebuild.detect.classical import ClassicalDetector
    from bioscan_rebuild.detect.shipped import ship

    trained = tmp_path / "trained"
    trained.mkdir()
    shutil.copyfile(shipped(MODEL), trained / "model.onnx")
    (trained / "fusion.json").write_text(Path(_rule_fitted_with(tmp_path, version="classical-2")).read_text())
    sha = file_sha256(trained / "model.onnx")
    command = "bioscan-rebuild train-detector --out results/detector --epochs 130"
    dev = _small_dev_set(realdata / "imgfilter-more", tmp_path / "dev")
    # the dev sets it was trained with, as train-detector records them
    dataset = {"real": {"coco": [str(dev / "coco_annotations.json")], "include_holdout": False}}
    (trained / "report.json").write_text(json.dumps(_train_report(sha, dataset=dataset, classes=None)))
    (trained / "MODEL_CARD.md").write_text(f"# card\n\n```sh\n{command}\n```\n")  # the command, as older cards kept it
    args = build_parser().parse_args(["refit-fusion", str(trained)])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    rule = json.loads((trained / "fusion.json").read_text())
    assert rule["fitted_on"]["classical"] == ClassicalDetector().params()
    assert rule["fitted_on"]["model_sha256"] == sha and rule["fitted_on"]["half"] == "train"
    assert rule["rule"] == summary["rule"] and summary["train_fit"]["photos"] > 0
    written = json.loads((trained / "report.json").read_text())
    assert written["command"] == command and written["fusion"]["rule"] == rule["rule"]
    assert set(written["fusion"]["holdout"]) >= {"classical", "onnx", "fusion", "oracle"}
    assert written["fusion_refit"] == f"bioscan-rebuild refit-fusion results/detector --dev-dir {dev}"
    card = (trained / "MODEL_CARD.md").read_text()
    assert command in card and sha in card and "| fusion | all" in card and written["fusion_refit"] in card
    assert not (trained / "fusion.json.refit").exists()
    assert ship(trained, tmp_path / "models")[MODEL] == sha


def test_refit_fusion_refuses_what_it_cannot_refit_and_writes_nothing(tmp_path):
    """Another model than the report's, a report without what the card needs, a model trained on the holdout
    half, a missing report: a clear error each, and the folder as it was."""
    from bioscan_rebuild.detect.yolo.train import refit_fusion

    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "model.onnx").write_bytes(b"a model")
    report = _train_report(file_sha256(trained / "model.onnx"), command="bioscan-rebuild train-detector")
    cases = [
        ({"onnx": {"sha256": "0" * 64, "opset": 17}}, "not the model"),
        ({"train_args": {"imgsz": 320}}, r"no train_args\.epochs, train_args\.batch"),
        ({"dataset": {"real": {"include_holdout": True}}}, "holdout half too"),
        ({}, "names no real dev sets"),  # and no --dev-dir given
    ]
    for change, match in cases:
        (trained / "report.json").write_text(json.dumps({**report, **change}))
        with pytest.raises(ValueError, match=match):
            refit_fusion(trained, None if not change else [tmp_path / "no-such-dev-set"])
        assert sorted(p.name for p in trained.iterdir()) == ["model.onnx", "report.json"]
    (trained / "report.json").write_text(json.dumps(report))
    with pytest.raises(FileNotFoundError, match="no coco_annotations.json in .*no-such-dev-set"):
        refit_fusion(trained, [tmp_path / "no-such-dev-set"])
    (trained / "report.json").unlink()
    with pytest.raises(FileNotFoundError, match="report.json"):
        refit_fusion(trained, [tmp_path])


def _same_scores(got, expected) -> bool:
    """Two score tables alike: the same keys and whole values, floats equal to 1e-9 of their size (the pixel
    statistics of an AMD and an Intel CPU differed in the 13th digit)."""
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(_same_scores(got[key], expected[key]) for key in expected)
        )
    if isinstance(expected, float) and isinstance(got, float):
        return got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    return got == expected


def test_the_shipped_rule_is_fitted_again_from_the_package_alone(realdata, tmp_path, monkeypatch, capsys):
    """`refit-fusion DIR --from-shipped` needs no training folder: from the package's four files and the real dev
    sets it fits the shipped rule again, byte for byte (the classical detector has not changed since it was
    fitted), scores the same held-out table, and the folder ships back."""
    from bioscan_rebuild.cli.main import build_parser
    from bioscan_rebuild.detect.shipped import ship

    monkeypatch.chdir(REPO)  # the report names the dev sets as train-detector was given them: ../shared/realdata
    trained = tmp_path / "shipped"
    args = build_parser().parse_args(["refit-fusion", str(trained), "--from-shipped"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (trained / "fusion.json").read_bytes() == shipped(FUSION_RULE).read_bytes()
    before, after = json.loads(shipped(TRAINING_REPORT).read_text()), json.loads((trained / "report.json").read_text())
    # counts exact; a mean or a correlation to the last bits of a float, which another CPU's SIMD sums differ in
    assert _same_scores(after["fusion"]["holdout"], before["fusion"]["holdout"])
    assert _same_scores(summary["holdout_fusion"], before["fusion"]["holdout"]["fusion"]["all"])
    assert after["fusion_refit"].startswith("bioscan-rebuild refit-fusion results/detector-shipped --from-shipped ")
    assert after["fusion"]["review_holdout"] == before["fusion"]["review_holdout"]
    card = (trained / "MODEL_CARD.md").read_text()
    assert after["fusion_refit"] in card and "| fusion | all (299) |" in card and "Ranked by the confidence" in card
    assert ship(trained, tmp_path / "models")[MODEL] == file_sha256(shipped(MODEL))


def test_refit_from_shipped_refuses_a_training_folder_and_leaves_nothing_behind(tmp_path):
    from bioscan_rebuild.detect.shipped import unpack
    from bioscan_rebuild.detect.yolo.train import refit_fusion

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "weights.pt").write_bytes(b"a training's own weights")
    with pytest.raises(ValueError, match="not a new or empty folder"):
        refit_fusion(taken, from_shipped=True)
    assert sorted(p.name for p in taken.iterdir()) == ["weights.pt"]
    # a fit that fails (no such dev set) leaves the folder as it was: gone if it was new, empty if it was empty
    fresh = tmp_path / "fresh"
    with pytest.raises(FileNotFoundError, match="no-such-dev-set"):
        refit_fusion(fresh, [tmp_path / "no-such-dev-set"], from_shipped=True)
    assert not fresh.exists()
    fresh.mkdir()
    with pytest.raises(FileNotFoundError, match="no-such-dev-set"):
        refit_fusion(fresh, [tmp_path / "no-such-dev-set"], from_shipped=True)
    assert list(fresh.iterdir()) == []
    assert sorted(p.name for p in unpack(fresh).iterdir()) == sorted(
        ["model.onnx", "fusion.json", "MODEL_CARD.md", "report.json"]
    )


def test_the_model_card_says_what_was_held_out():
    """A model trained on both halves (--include-holdout) must not claim a held-out half it has seen."""
    from bioscan_rebuild.detect.model_card import model_card

    def card(**real):
        return model_card(_train_report("a" * 64, dataset={"real": real}), "m.onnx", "bioscan-rebuild train-detector")

    assert "The `holdout` half was never trained or tuned on." in card(include_holdout=False)
    both = card(include_holdout=True)
    assert "never trained" not in both and "both halves" in both and "Nothing was held out" in both
    assert "held-out half" not in both and "no photo is left to score it on" in both
    assert "Part 2 of 5 of the train half was left out" in card(left_out_fold={"fold": 2, "folds": 5})


def test_the_card_of_an_unscored_model_gives_the_command_that_made_it():
    """``train-detector --no-real --no-eval`` wrote a card whose command lacked both (run again, it asked for the dev
    sets), and which said the placeholder rule was "fitted on the train half only" (reviewer modelint). The
    shipped model's command is made again word for word from its report."""
    from bioscan_rebuild.detect.model_card import model_card
    from bioscan_rebuild.detect.yolo.train import training_command

    recipe = dict(generated=8, epochs=1, imgsz=64, batch=4, seed=0, real_repeat=2, model=None, leave_out_fold=None)
    command = training_command(
        "results/detector", [], classes_csv=None, fold_options=[], real=False, include_holdout=False, score=False,
        **recipe,
    )  # fmt: skip
    assert command == (
        "bioscan-rebuild train-detector --out results/detector --no-real --no-eval --generated 8 --epochs 1 "
        "--imgsz 64 --batch 4 --seed 0 --real-repeat 2"
    )
    report = json.loads(shipped(TRAINING_REPORT).read_text())
    args, dataset = report["train_args"], report["dataset"]
    shipped_command = training_command(
        "results/detector",
        [str(Path(coco).parent) for coco in dataset["real"]["coco"]],
        classes_csv="../shared/realdata/imgfilter-classes.csv",
        generated=dataset["n_generated"],
        epochs=args["epochs"],
        imgsz=args["imgsz"],
        batch=args["batch"],
        seed=args["seed"],
        real_repeat=dataset["real"]["real_repeat"],
        model=None,
        leave_out_fold=None,
        fold_options=[],
        real=True,
        include_holdout=False,
        score=True,
    )
    assert report["command"].splitlines()[0] == shipped_command
    card = model_card(_train_report("a" * 64, dataset={"real": {}}), "m.onnx", command)
    assert "fitted on the train half only" not in card and "fitted on the training half only" not in card
    assert "the rule's defaults, fitted on nothing" in card and "the held-out half was not scored" in card
    assert command in card


def test_every_backend_takes_the_same_arrays_and_refuses_the_same_with_one_message(realdata):
    """Grey (H, W) or (H, W, 1) and RGBA arrays are the photo in RGB to every backend; 16-bit, float or other
    shapes are one ValueError saying what was given (the classical and fusion backends used to crash inside
    OpenCV, the onnx one on (H, W, 1))."""
    import numpy as np

    from bioscan_rebuild.detect.evaluate import load_rgb
    from bioscan_rebuild.detect.registry import make_detector

    rgb = load_rgb(sorted((realdata / "imgfilter-dev").glob("*.jpg"))[0])
    grey = rgb.mean(axis=2).astype(np.uint8)
    as_rgb = np.repeat(grey[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    for backend in ("classical", "onnx", "fusion"):
        detector = make_detector(backend)
        want = detector.detect(as_rgb)
        for given in (grey, grey[..., None]):
            assert (detector.detect(given).box, detector.detect(given).score) == (want.box, want.score), backend
        assert detector.detect(rgba).box == detector.detect(rgb).box
        for bad, says in ((rgb.astype(np.uint16), "uint16"), (rgb / 255.0, "float64"), (rgb[..., :2], "shape")):
            with pytest.raises(ValueError, match=says):
                detector.detect(bad)


def _yolo_shaped_onnx(path: Path, classes: int, names: bool = True, nms: bool = False) -> Path:
    """A small ONNX model of a YOLO detector's shapes (input (b, 3, h, w), output (b, 4 + classes, n))."""
    from conftest import import_or_skip

    onnx = import_or_skip("onnx", "the yolo extra builds the test's ONNX models")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    channels = 4 + classes
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array((rng.standard_normal((channels, 3, 1, 1)) * 50).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.array([200, 200, 300, 300] + [0.9] * classes, np.float32), "b")
    shape = numpy_helper.from_array(np.array([0, channels, -1], np.int64), "shape")
    nodes = [
        helper.make_node("AveragePool", ["images"], ["p"], kernel_shape=[32, 32], strides=[32, 32]),
        helper.make_node("Conv", ["p", "w", "b"], ["c"]),
        helper.make_node("Reshape", ["c", "shape"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["b", 3, "h", "w"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["b", channels, "n"])],
        [weights, bias, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"stride": "32", "imgsz": "[320, 320]", "task": "detect"}
    if names:
        meta["names"] = str({i: f"class{i}" for i in range(classes)})
    if nms:  # ultralytics' export(nms=True) records its arguments so
        meta["args"] = str({"batch": 1, "nms": True})
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)
    return path


def _vector_onnx(path: Path) -> Path:
    from conftest import import_or_skip

    onnx = import_or_skip("onnx", "the yolo extra builds the test's ONNX models")
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [inp], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_model_that_is_no_one_class_detector_is_refused_in_one_line(realdata, tmp_path, monkeypatch):
    """A model of 80 or 3 classes ran under ``--backend onnx``, every photo boxed (``touches_edge``) and released
    with exit 0; a model that takes no photo ended in a traceback; a file put in place of the shipped model ran
    silently (the fusion backend refused it; reviewer modelint)."""
    from bioscan_rebuild.cli.main import main
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.detect.yolo import backends
    from bioscan_rebuild.detect.yolo.backends import OnnxDetector

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").symlink_to(sorted((realdata / "imgfilter-dev").glob("*.jpg"))[0])
    refused = {
        "80 classes": (_yolo_shaped_onnx(tmp_path / "coco80.onnx", 80), "a model of 80 classes (class0, class1"),
        "3, unnamed": (_yolo_shaped_onnx(tmp_path / "nc3.onnx", 3, names=False), "its output is ['b', 7, 'n'], not"),
        "no photos": (_vector_onnx(tmp_path / "vector.onnx"), "not a photo detector: its input is [1, 10]"),
        # one class, exported with nms=True: not "train one", which would not help (reviewer diffl)
        "nms": (_yolo_shaped_onnx(tmp_path / "nms.onnx", 2, names=False, nms=True), "exported with nms=True"),
    }
    for model, phrase in refused.values():
        with pytest.raises(InputError, match=re.escape(phrase)):
            OnnxDetector(model)
    one = _yolo_shaped_onnx(tmp_path / "one.onnx", 1)
    assert OnnxDetector(one).detect_batch([np.zeros((64, 64, 3), np.uint8)])  # one class: a detector
    # the command: one line, exit 2, no traceback
    code = main(["detect", str(photos), str(tmp_path / "out.csv"), "--backend", "onnx", "--weights", str(one)])
    assert code == 0
    # another file where the shipped model lies: refused, naming the sha256 the rule and card give
    real = shipped(MODEL)
    monkeypatch.setattr(backends, "shipped", lambda name: one if name == MODEL else shipped(name))
    with pytest.raises(InputError, match="not the model that ships with this package"):
        OnnxDetector()
    monkeypatch.setattr(backends, "shipped", lambda name: real if name == MODEL else shipped(name))
    assert OnnxDetector().sha256 == file_sha256(real)


def test_a_backend_that_cannot_run_says_why_in_one_line(tmp_path, capsys):
    """The fusion backend with weights its rule was not fitted on, the yolo backend with a file that is no
    checkpoint or without torch: each a traceback from the ``detect`` command (reviewer modelint)."""
    from bioscan_rebuild.cli.main import main

    photos = tmp_path / "photos"
    photos.mkdir()
    one = _yolo_shaped_onnx(tmp_path / "one.onnx", 1)
    (tmp_path / "broken.pt").write_bytes(b"no checkpoint")
    cases = [
        (["--backend", "fusion", "--weights", str(one)], "fitted on the model of sha256"),
        (["--backend", "yolo", "--weights", str(tmp_path / "broken.pt")], "broken.pt: not a YOLO checkpoint"),
    ]
    for options, phrase in cases:
        assert main(["detect", str(photos), str(tmp_path / "out.csv"), *options]) == 2
        assert phrase in capsys.readouterr().err
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['ultralytics'] = None\n"
        "from bioscan_rebuild.cli.main import main\n"
        f"sys.exit(main(['detect', {str(photos)!r}, 'o.csv', '--backend', 'yolo', '--weights', 'w.pt']))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "the yolo backend needs torch and ultralytics" in done.stderr and "yolo extra" in done.stderr
