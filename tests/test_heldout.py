"""The held-out scoring of the detectors: the fusion fit with and without the learned model's TTA."""

from __future__ import annotations

import json
import re

import pytest

from bioscan_rebuild.detect.base import Detection
from bioscan_rebuild.detect.fusion import FusionRule
from bioscan_rebuild.detect.heldout import backend_detections, fit_fusion, review_table, score_table

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


def test_the_rule_ceiling_is_the_rule_fitted_on_the_holdout_half_itself():
    """Train and holdout halves that disagree on whom to trust: the rule fitted on the train half fails the
    holdout half, and the ceiling (fitted there) shows what a rule could still reach on it."""
    rows = []
    for half, classical_box, learned_box in (("train", TRUTH, WRONG), ("holdout", WRONG, TRUTH)):
        for score in (0.2, 0.3, 0.6, 0.7):
            rows.append(_row(half, TRUTH, _det(classical_box, 150.0), _det(learned_box, score), _det(None, 0)))
        rows.append(_row(half, None, _det(None, 0), _det(None, 0), _det(None, 0)))
    rule, fit = fit_fusion(rows)
    assert fit["specimens_right"] == 1.0
    assert score_table(rows, rule, "holdout")["fusion"]["all"]["iou_ge_0.5"] == 0.0
    ceiling_rule, ceiling = fit_fusion(rows, half="holdout")
    assert ceiling["specimens_right"] == ceiling["empty_right"] == 1.0 and ceiling["photos"] == 5
    assert score_table(rows, ceiling_rule, "holdout")["fusion"]["all"]["iou_ge_0.5"] == 1.0


def test_the_review_table_counts_the_fusion_s_mistakes_among_the_flagged_photos():
    """Three held-out photos: two agreeing right boxes (trusted), two disagreeing boxes where the learned one is
    wrong (flagged: low confidence, disagreement), an empty well the classical detector boxes alone (wrong,
    flagged: disagreement only). A train-half photo is not counted."""
    confidence = {"agree": 0.95, "learned_chosen": 0.6, "classical_only": 0.9}
    rule = FusionRule(empty_learned_max=0.0, empty_classical_max=0.0, trust_learned=0.5, confidence=confidence)
    rows = [
        _row("holdout", TRUTH, _det(TRUTH, 150.0), _det(TRUTH, 0.9), _det(None, 0)),
        _row("holdout", TRUTH, _det(TRUTH, 150.0), _det(WRONG, 0.9), _det(None, 0)),
        _row("holdout", None, _det(WRONG, 150.0), _det(None, 0), _det(None, 0)),
        _row("train", None, _det(WRONG, 150.0), _det(None, 0), _det(None, 0)),
    ]
    review = review_table(rows, rule)
    assert {k: review[k] for k in ("photos", "flagged", "wrong", "wrong_flagged")} == {
        "photos": 3,
        "flagged": 2,
        "wrong": 2,
        "wrong_flagged": 2,
    }
    assert review["per_reason"]["low_confidence"] == {"flagged": 1, "wrong": 1}
    assert review["per_reason"]["backends_disagree"] == {"flagged": 2, "wrong": 2}
    assert review["per_reason"]["box_on_rim"] == {"flagged": 0, "wrong": 0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["annotations"][0].update(image_id="1"), "names image_id '1', which no image has"),
        (lambda c: c["annotations"].pop(1), "b.jpg: no annotation"),
        (lambda c: c["annotations"][0].update(bbox=[5, 5, -3, 10]), "a.jpg: bbox [5, 5, -3, 10] has no size"),
        (lambda c: c["annotations"].append({"id": 9, "image_id": 2, "bbox": [1, 1, 4, 4]}), "b.jpg: both an empty"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), "a.jpg: bbox [1, 2, 3] is not"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, float("nan"), 4]), "a.jpg: bbox [1, 2, nan, 4] is not"),
        (lambda c: c["images"].append({"id": 2, "file_name": "c.jpg"}), "image ids used twice: [2]"),
    ],
)
def test_a_coco_file_that_could_be_misread_is_refused(tmp_path, change, message):
    """A specimen read as an empty well would teach the model, and score it, the opposite: string ids, a lost
    annotation, a negative box, an image both empty and boxed, a short bbox are refused, naming the photo."""
    from bioscan_rebuild.detect.evaluate import load_coco_ground_truth

    coco = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "bbox": [10, 20, 30, 40]},
            {"id": 2, "image_id": 2, "bbox": [0, 0, 0, 0]},
        ],
    }
    path = tmp_path / "coco_annotations.json"
    path.write_text(json.dumps(coco))
    assert [t.box for t in load_coco_ground_truth(path)] == [(10, 20, 40, 60), None]
    change(coco)
    path.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=re.escape(message)):
        load_coco_ground_truth(path)


def test_a_dev_set_whose_photos_carry_an_exif_turn_is_scored_and_trained_upright(tmp_path, realdata):
    """The image stage turns a photo by its EXIF orientation; the dev-set loader and the YOLO dataset did not: a dev
    set from an imager that writes the tag was scored against sideways pixels (classical: 0 % boxed), and its
    training labels were normalised by the stored size (negative widths, centres past 1)."""
    import numpy as np
    from PIL import Image

    from bioscan_rebuild.detect.evaluate import dev_split, load_rgb
    from bioscan_rebuild.detect.yolo.dataset import prepare_yolo_dataset
    from bioscan_rebuild.synth.photos import draw_well_photo

    dev = realdata / "imgfilter-dev"
    coco = json.loads((dev / "coco_annotations.json").read_text())
    boxed = {a["image_id"] for a in coco["annotations"] if a["bbox"][2] > 0}
    chosen = [i for i in coco["images"] if i["id"] in boxed and dev_split(i["file_name"].split(".")[0]) == "train"]
    chosen = chosen[:3]
    ids = {i["id"] for i in chosen}
    subset = {**coco, "images": chosen, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
    folders = {}
    for name, turned in (("plain", False), ("exif", True)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "coco_annotations.json").write_text(json.dumps(subset))
        for image in chosen:
            with Image.open(dev / image["file_name"]) as photo:
                if turned:  # stored a quarter turn left, Orientation 6 says: turn it right to show it
                    exif = Image.Exif()
                    exif[0x0112] = 6
                    photo.rotate(90, expand=True).save(folder / image["file_name"], quality=95, exif=exif)
                else:
                    photo.save(folder / image["file_name"], quality=95)
        folders[name] = folder
    for image in chosen:
        upright = load_rgb(folders["exif"] / image["file_name"])
        assert upright.shape == load_rgb(dev / image["file_name"]).shape == (768, 1024, 3)
        assert np.abs(upright.astype(int) - load_rgb(folders["plain"] / image["file_name"])).mean() < 4

    def labels(name):
        data = prepare_yolo_dataset(
            tmp_path / f"yolo-{name}",
            coco_path=folders[name] / "coco_annotations.json",
            real_repeat=2,
            n_generated=2,
            draw_photo=draw_well_photo,
        )
        found = {}
        for path in sorted(data.parent.glob("labels/*/*.txt")):
            found[path.name] = [float(v) for v in path.read_text().split()]
            with Image.open(data.parent / "images" / path.parent.name / f"{path.stem}.jpg") as photo:
                assert photo.getexif().get(0x0112, 1) == 1  # written upright: no reader has to turn it
        return found

    plain, turned = labels("plain"), labels("exif")
    assert plain.keys() == turned.keys() and len(plain) >= 3
    for name, values in turned.items():
        assert all(0 <= v <= 1 for v in values[1:]) and values[3] > 0 and values[4] > 0, (name, values)
        assert np.allclose(values, plain[name], atol=0.01), (name, values, plain[name])


def test_a_dev_photo_smaller_than_its_annotation_is_one_error_naming_it(tmp_path, realdata):
    """A box that leaves the photo (a dev photo saved smaller than the one annotated) stopped the dataset with a
    traceback naming no photo; it is one input error naming the COCO file and the photo."""
    from PIL import Image

    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.detect.evaluate import dev_split
    from bioscan_rebuild.detect.yolo.dataset import prepare_yolo_dataset
    from bioscan_rebuild.synth.photos import draw_well_photo

    dev = realdata / "imgfilter-dev"
    coco = json.loads((dev / "coco_annotations.json").read_text())
    far = {a["image_id"] for a in coco["annotations"] if a["bbox"][2] > 0 and a["bbox"][0] > 600}
    chosen = [i for i in coco["images"] if i["id"] in far and dev_split(i["file_name"].split(".")[0]) == "train"][:1]
    ids = {i["id"] for i in chosen}
    subset = {**coco, "images": chosen, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
    (tmp_path / "coco_annotations.json").write_text(json.dumps(subset))
    with Image.open(dev / chosen[0]["file_name"]) as photo:
        photo.resize((512, 384)).save(tmp_path / chosen[0]["file_name"])
    with pytest.raises(InputError, match=re.escape(chosen[0]["file_name"]) + r": box .* lies outside a 512x384 photo"):
        prepare_yolo_dataset(
            tmp_path / "yolo", coco_path=tmp_path / "coco_annotations.json", n_generated=2, draw_photo=draw_well_photo
        )
