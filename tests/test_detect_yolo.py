"""YOLO / ONNX detector backends: dataset preparation, a tiny offline training run, inference
mechanics and agreement of the two backends (CPU; mechanics, not accuracy).

Needs the optional detector stack (torch, ultralytics, onnx, onnxruntime): skipped without it,
except under CI=true, where its absence is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, require

_STACK = ("torch", "torchvision", "ultralytics", "onnx", "onnxruntime")
_MISSING = [m for m in _STACK if not importlib.util.find_spec(m)]
require(not _MISSING, f"detector stack not installed ({', '.join(_MISSING)}): pip install {' '.join(_STACK)} onnxslim")

from bioscan_rebuild.cli.main import build_parser  # noqa: E402
from bioscan_rebuild.core.boxes import rotate_box_ccw  # noqa: E402
from bioscan_rebuild.core.io import file_sha256  # noqa: E402
from bioscan_rebuild.detect.base import DETECTOR_STATUSES, Detection  # noqa: E402
from bioscan_rebuild.detect.evaluate import dev_split, iou  # noqa: E402
from bioscan_rebuild.detect.registry import make_detector  # noqa: E402
from bioscan_rebuild.detect.yolo.backends import (  # noqa: E402
    OnnxDetector,
    YoloDetector,
    boxes_to_detection,
    letterbox,
    nms_numpy,
    scale_boxes,
)
from bioscan_rebuild.detect.yolo.dataset import prepare_yolo_dataset  # noqa: E402
from bioscan_rebuild.detect.yolo.offline import configure_offline  # noqa: E402
from bioscan_rebuild.detect.yolo.train import train_detector  # noqa: E402
from bioscan_rebuild.synth.photos import draw_well_photo  # noqa: E402

KINDS = ("specimen", "empty", "edge", "specimen", "specimen", "edge")


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    return configure_offline(tmp_path_factory.mktemp("ultralytics-config"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, config_dir):
    """One tiny training run (12 generated photos, 160 px, 2 epochs), shared by the module."""
    root = tmp_path_factory.mktemp("yolo")
    data_yaml = prepare_yolo_dataset(root / "data", real=False, n_generated=12, seed=0, draw_photo=draw_well_photo)
    report = train_detector(
        data_yaml, root / "model", epochs=2, imgsz=160, batch=4, workers=0, device="cpu", config_dir=config_dir
    )
    return root / "model", report


@pytest.fixture(scope="module")
def photos():
    return [draw_well_photo(np.random.default_rng([42, i]), kind) for i, kind in enumerate(KINDS)]


def _check_detection(detection: Detection, width: int, height: int) -> None:
    assert isinstance(detection, Detection)
    assert detection.status in DETECTOR_STATUSES
    assert detection.pixel_count is None and detection.mask is None
    if detection.status == "no_object":
        assert detection.box is None and detection.candidates == 0
        return
    x0, y0, x1, y1 = detection.box
    assert all(isinstance(v, int) for v in detection.box)
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert detection.candidates >= 1 and 0.0 < detection.score <= 1.0
    if detection.status == "multiple_candidates":
        assert detection.candidates >= 2


# --------------------------------------------------------------------------
# Dataset


def _read_labels(label_dir):
    return {p.name: p.read_text() for p in sorted(label_dir.glob("*.txt"))}


def test_prepare_generated_dataset_is_valid_and_deterministic(tmp_path, config_dir):
    a = prepare_yolo_dataset(tmp_path / "a", real=False, n_generated=10, seed=3, draw_photo=draw_well_photo)
    b = prepare_yolo_dataset(tmp_path / "b", real=False, n_generated=10, seed=3, draw_photo=draw_well_photo)
    root = a.parent
    assert "names:\n  0: specimen" in a.read_text()
    for split in ("train", "val"):
        images = sorted(p.stem for p in (root / "images" / split).glob("*.jpg"))
        labels = _read_labels(root / "labels" / split)
        assert images and sorted(n[:-4] for n in labels) == images
        for name, text in labels.items():
            if "_empty" in name:
                assert text == ""
                continue
            cls, *xywh = text.split()
            assert cls == "0" and len(xywh) == 4
            assert all(0.0 <= float(v) <= 1.0 for v in xywh) and float(xywh[2]) > 0 and float(xywh[3]) > 0
        for image in (root / "images" / split).glob("*.jpg"):
            assert image.read_bytes() == (b.parent / "images" / split / image.name).read_bytes()
        assert labels == _read_labels(b.parent / "labels" / split)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["counts"]["val_gen"] + manifest["counts"]["val_gen_empty"] == 1
    assert manifest["real"] is None


def test_prepare_real_dataset_uses_train_half_only(tmp_path, realdata, config_dir):
    dev = realdata / "imgfilter-dev"
    data_yaml = prepare_yolo_dataset(
        tmp_path / "d", coco_path=dev / "coco_annotations.json", n_generated=2, seed=0, draw_photo=draw_well_photo
    )
    root = data_yaml.parent
    real = [p for p in root.glob("images/*/*.jpg") if not p.name.startswith("gen")]
    assert len(real) > 100
    processids = {p.name.split(".")[0] for p in real}
    assert all(dev_split(pid) == "train" for pid in processids)
    assert {p.parent.name for p in real} == {"train", "val"}
    coco = json.loads((dev / "coco_annotations.json").read_text())
    empty = {img["file_name"].split(".")[0] for img in coco["images"]} - {
        img["file_name"].split(".")[0]
        for img in coco["images"]
        for ann in coco["annotations"]
        if ann["image_id"] == img["id"] and ann["bbox"][2] > 0
    }
    for image in real:
        label = (root / "labels" / image.parent.name / (image.stem + ".txt")).read_text()
        assert (label == "") == (image.name.split(".")[0] in empty)


def test_rotate_box_ccw_follows_the_pixels():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(30, 50, 3), dtype=np.uint8)
    box = (7, 4, 20, 25)
    turned = np.rot90(image, 1)
    x0, y0, x1, y1 = rotate_box_ccw(box, 50)
    assert turned.shape[:2] == (50, 30)
    np.testing.assert_array_equal(turned[y0:y1, x0:x1], np.rot90(image[4:25, 7:20], 1))
    for _ in range(3):  # four turns: back where it started
        x0, y0, x1, y1 = rotate_box_ccw((x0, y0, x1, y1), turned.shape[1])
        turned = np.rot90(turned, 1)
    assert (x0, y0, x1, y1) == box


def test_real_copies_are_turned_with_their_boxes(tmp_path, realdata, config_dir):
    dev = realdata / "imgfilter-dev"
    root = prepare_yolo_dataset(
        tmp_path / "d",
        coco_path=dev / "coco_annotations.json",
        n_generated=2,
        real_repeat=2,
        draw_photo=draw_well_photo,
    ).parent
    copies = sorted(root.glob("images/train/*.copy1.jpg"))
    assert len(copies) > 100
    checked = 0
    for copy in copies[:40]:
        original = copy.with_name(copy.name.replace(".copy1", ""))
        with Image.open(original) as a, Image.open(copy) as b:
            assert b.size == a.size[::-1]
            first = np.asarray(a.convert("L"), dtype=np.float32)
            turned = np.asarray(b.convert("L"), dtype=np.float32)
        assert np.abs(np.rot90(first, 1) - turned).mean() < 3  # the same photo, a quarter turn (JPEG loss only)
        label_a = (root / "labels/train" / (original.stem + ".txt")).read_text().split()
        label_b = (root / "labels/train" / (copy.stem + ".txt")).read_text().split()
        assert bool(label_a) == bool(label_b)
        if label_a:  # normalised (cx, cy, w, h) after the turn: (cy, 1 - cx, h, w)
            cx, cy, w, h = map(float, label_a[1:])
            np.testing.assert_allclose(list(map(float, label_b[1:])), [cy, 1 - cx, h, w], atol=2e-6)
            checked += 1
    assert checked > 20


# --------------------------------------------------------------------------
# Training outputs


def test_training_writes_weights_onnx_and_report(trained):
    model_dir, report = trained
    weights, onnx_path = model_dir / "weights.pt", model_dir / "model.onnx"
    assert weights.is_file() and onnx_path.is_file()
    on_disk = json.loads((model_dir / "report.json").read_text())
    assert on_disk["weights"]["sha256"] == file_sha256(weights) == report["weights"]["sha256"]
    assert on_disk["onnx"]["sha256"] == file_sha256(onnx_path)
    assert on_disk["train_args"]["epochs"] == 2 and on_disk["train_args"]["deterministic"] is True
    assert on_disk["versions"]["ultralytics"] and on_disk["versions"]["torch"]
    assert on_disk["dataset"]["counts"]["train_gen"] > 0


def test_ultralytics_runs_offline(trained, config_dir):
    import ultralytics.utils
    from ultralytics import settings

    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "0"
    assert os.environ["YOLO_CONFIG_DIR"] == str(config_dir)
    assert ultralytics.utils.ONLINE is False
    assert settings["sync"] is False
    assert (config_dir / "Ultralytics" / "Arial.ttf").is_file()


# --------------------------------------------------------------------------
# Inference


@pytest.mark.parametrize("conf", [0.25, 0.001])
def test_backends_return_valid_detections(trained, photos, conf):
    model_dir, _ = trained
    images = [p.image for p in photos]
    for detector in (
        YoloDetector(model_dir / "weights.pt", conf=conf, batch=4),
        OnnxDetector(model_dir / "model.onnx", conf=conf, batch=4),
    ):
        detections = detector.detect_batch(images)
        assert len(detections) == len(images)
        for detection, image in zip(detections, images, strict=True):
            _check_detection(detection, image.shape[1], image.shape[0])
        assert detector.detect(images[0]) == detections[0]
        json.dumps(detector.params())
        assert detector.params()["conf"] == conf


def test_onnx_agrees_with_yolo(trained, photos):
    """Same model, same letterbox and NMS: same status and nearly the same box. A low conf
    makes the barely trained model report boxes at all. The last batch mixes image sizes (square
    letterbox instead of the minimal rectangle)."""
    model_dir, _ = trained
    yolo = YoloDetector(model_dir, conf=0.001)
    onnx = OnnxDetector(model_dir, conf=0.001)
    assert yolo.imgsz == onnx.imgsz == 160
    small = draw_well_photo(np.random.default_rng(7), "specimen", width=640, height=512)
    batches = [[p.image for p in photos], [photos[0].image, small.image]]
    compared = 0
    for images in batches:
        for a, b in zip(yolo.detect_batch(images), onnx.detect_batch(images), strict=True):
            assert a.status == b.status
            if a.box and b.box:
                assert iou(a.box, b.box) > 0.9, (a, b)
                assert abs(a.score - b.score) < 0.01
                compared += 1
    assert compared >= 2


def test_make_detector_and_onnx_needs_no_torch(trained, photos, tmp_path):
    model_dir, _ = trained
    assert make_detector("yolo", weights=model_dir / "weights.pt").name == "yolo"
    assert make_detector("onnx", weights=model_dir / "model.onnx").name == "onnx"
    np.save(tmp_path / "photo.npy", photos[0].image)
    code = (
        "import sys, numpy as np\n"
        "from bioscan_rebuild.detect.yolo.backends import OnnxDetector\n"
        f"d = OnnxDetector({str(model_dir / 'model.onnx')!r}, conf=0.001)\n"
        f"print(d.detect(np.load({str(tmp_path / 'photo.npy')!r})).status)\n"
        "assert 'torch' not in sys.modules and 'ultralytics' not in sys.modules, 'heavy import'\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in DETECTOR_STATUSES


def test_a_yolo_checkpoint_of_several_classes_is_refused_in_one_line(config_dir, tmp_path):
    """An 80-class checkpoint (the COCO model's layout) under the yolo backend boxed whatever it saw as a
    specimen; the onnx backend refuses such a model, so the yolo one does too."""
    from ultralytics import YOLO

    from bioscan_rebuild.core.errors import InputError

    YOLO("yolo11n.yaml", task="detect").save(tmp_path / "coco80.pt")
    with pytest.raises(InputError, match="coco80.pt: a model of 80 classes"):
        make_detector("yolo", weights=tmp_path / "coco80.pt")


# --------------------------------------------------------------------------
# The numpy reimplementations against ultralytics / torchvision


@pytest.mark.parametrize("shape", [(768, 1024), (700, 1000), (1024, 768), (100, 333)])
@pytest.mark.parametrize("auto", [True, False])
def test_letterbox_matches_ultralytics(shape, auto):
    from ultralytics.data.augment import LetterBox

    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = LetterBox(320, auto=auto, stride=32)(image=image)
    np.testing.assert_array_equal(letterbox(image, 320, auto), expected)


def test_scale_boxes_matches_ultralytics():
    import torch
    from ultralytics.utils import ops

    boxes = np.array([[10.5, 20.25, 200.0, 150.0], [-5.0, 3.0, 330.0, 250.0]], np.float32)
    for input_hw, image_hw in (((256, 320), (768, 1024)), ((320, 320), (700, 1000)), ((320, 256), (1024, 768))):
        expected = ops.scale_boxes(input_hw, torch.from_numpy(boxes.copy()), image_hw).numpy()
        np.testing.assert_allclose(scale_boxes(input_hw, boxes, image_hw), expected, atol=1e-3)


def test_nms_matches_ultralytics():
    import torch
    from ultralytics.utils.nms import non_max_suppression

    rng = np.random.default_rng(1)
    n = 400
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(5, 120, (n, 2))
    pred = np.concatenate([xy, wh, rng.uniform(0, 1, (n, 1))], axis=1).T.astype(np.float32)  # (5, n)
    for conf, thr in ((0.25, 0.5), (0.6, 0.3), (0.99, 0.7)):
        expected = non_max_suppression(torch.from_numpy(pred[None]), conf, thr, max_det=100)[0].numpy()
        boxes, scores = nms_numpy(pred, conf, thr, max_det=100)
        np.testing.assert_allclose(boxes, expected[:, :4], atol=1e-4)
        np.testing.assert_allclose(scores, expected[:, 4], atol=1e-6)


def test_boxes_to_detection_semantics():
    to_det = boxes_to_detection
    assert to_det(np.zeros((0, 4)), np.zeros(0), 100, 80) == Detection("no_object", None, None, 0.0, 0)
    one = to_det(np.array([[-3.2, 10.4, 50.6, 90.0]]), np.array([0.8]), 100, 80)
    assert one.status == "ok" and one.box == (0, 10, 51, 80) and one.candidates == 1
    assert one.score == pytest.approx(0.8)
    # A second box inside the top one (a leg, say) is not a separate candidate ...
    nested = to_det(np.array([[10, 10, 60, 60], [12, 12, 30, 30]]), np.array([0.5, 0.9]), 100, 80)
    assert nested.status == "ok" and nested.box == (12, 12, 30, 30) and nested.candidates == 2
    # ... a box elsewhere is.
    apart = to_det(np.array([[10, 10, 40, 40], [60, 40, 90, 70]]), np.array([0.9, 0.4]), 100, 80)
    assert apart.status == "multiple_candidates" and apart.box == (10, 10, 40, 40)
    # ... unless the model is hardly sure of it (the fusion runs the model down to 0.01): still counted
    faint = to_det(np.array([[10, 10, 40, 40], [60, 40, 90, 70]]), np.array([0.9, 0.02]), 100, 80)
    assert faint.status == "ok" and faint.candidates == 2


def test_cli_prepare(tmp_path, config_dir, capsys):
    args = build_parser().parse_args(
        ["train-detector", "--prepare-only", "--out", str(tmp_path / "ds"), "--no-real", "--generated", "3"]
    )
    assert args.func(args) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["n_generated"] == 3
    assert (tmp_path / "ds" / "data.yaml").is_file()


def test_workflow_trains_the_detector_and_runs_the_image_stage_with_it(sample_dir, tmp_path, config_dir, monkeypatch):
    """`snakemake train_detector`, then the image rules with the onnx backend on its export."""
    import shutil

    import pandas as pd
    import yaml

    from conftest import run_snakemake

    (tmp_path / "config").mkdir()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["train_detector"] = {"dev_dirs": [], "generated": 8, "epochs": 1, "imgsz": 96, "batch": 4}
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copytree(sample_dir, tmp_path / "resources" / "sample")
    # the snakemake subprocess inherits it; monkeypatch undoes it, so no later test sees this config dir
    monkeypatch.setenv("BIOSCAN_YOLO_CONFIG_DIR", str(config_dir))
    run_snakemake(tmp_path, "train_detector")
    report = json.loads((tmp_path / "results" / "detector" / "report.json").read_text())
    onnx = tmp_path / "results" / "detector" / "model.onnx"
    assert report["onnx"]["sha256"] == file_sha256(onnx)
    # what refit-fusion needs later: how the model was made, and the image classes (none here)
    assert report["command"].startswith("bioscan-rebuild train-detector") and report["classes"] is None
    config["images"]["detector"] = {"backend": "onnx", "weights": "results/detector/model.onnx", "params": {}}
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(tmp_path, "results/images/summary.json")
    images = pd.concat(pd.read_parquet(p) for p in (tmp_path / "results" / "images").glob("shard-*/images.parquet"))
    assert set(images["detector"]) == {"onnx"} and len(images) > 200
    assert set(images["image_status"]) <= {"ok", "touches_edge", "multiple_candidates", "no_object"}
    boxed = images[images["x0"].notna()]
    # Box-only backend: organism pixels come from the classical segmenter inside the box.
    assert boxed["image_measurement_value"].notna().all()


# ------------------------------------------------------------------------------ bench/gpu_train.py (a lent GPU run)
def _gpu_train():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu_train", REPO / "bench" / "gpu_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_training_run_gives_a_model_that_is_fitted_and_shipped_here_without_polars(tmp_path, realdata):
    """The device image has no polars (ultralytics' trainer reads its results.csv with it; its wheel is too big to
    carry): the run, blocked from importing it, still trains (here the CPU smoke run) and leaves the files that,
    fitted and scored here by refit-fusion (this machine's classical detector), ship-detector takes."""
    from bioscan_rebuild.detect.shipped import ship
    from bioscan_rebuild.detect.yolo.train import refit_fusion

    out = tmp_path / "out"
    run = (
        "import runpy, sys; sys.modules['polars'] = None; "
        f"sys.argv = ['gpu_train.py', 'run', '--out', {str(out)!r}, '--work', {str(tmp_path / 'work')!r}]; "
        f"runpy.run_path({str(REPO / 'bench' / 'gpu_train.py')!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "smoke run at 64 px" in done.stdout and "next, here: bioscan-rebuild refit-fusion" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([*_gpu_train().OUTPUTS, "results.csv"])
    report = json.loads((out / "report.json").read_text())
    assert report["train_args"]["epochs"] == 1 and report["train_args"]["imgsz"] == 64 and "fusion" not in report
    card = (out / "MODEL_CARD.md").read_text()
    # the dev sets as the card and the rule name them on any machine; how the model was made, not the config's way
    assert "--dev-dir ../shared/realdata/imgfilter-dev" in card
    assert "# run on cpu by bench/gpu_train.py run --budget 300" in card and "snakemake train_detector" not in card
    assert _gpu_train().read_results_csv(out / "results.csv")["epoch"] == [1.0]
    with pytest.raises(ValueError, match="not fitted on a training half"):
        ship(out, tmp_path / "models")  # the device leaves the rule unfitted
    summary = refit_fusion(out, classes_csv=realdata / "imgfilter-classes.csv")
    assert summary["train_fit"]["photos"] > 250
    report = json.loads((out / "report.json").read_text())
    assert set(report["fusion"]["holdout"]) == {"classical", "onnx", "onnx_tta", "fusion", "oracle"}
    review = report["fusion"]["review_holdout"]
    assert review["photos"] == 299 and 0 <= review["wrong_flagged"] <= review["wrong"]
    assert (
        f"Review queue (fusion, held-out half): {review['flagged']} of 299 photos"
        in (out / "MODEL_CARD.md").read_text()
    )
    written = ship(out, tmp_path / "models")
    assert written["specimen-yolo11n.onnx"] == report["onnx"]["sha256"]


def test_gpu_training_pack_fits_what_a_device_call_carries(tmp_path, realdata):
    """The dev sets travel as a copy (../shared does not); with the tracked files they stay under the 64 MiB a
    device call carries, leaving room for the wheels."""
    bench = _gpu_train()
    sizes = bench.pack(realdata, wheels=False, root=tmp_path)
    for name in bench.DEV_SETS:
        copied = sorted(p.name for p in (tmp_path / ".devdata" / name).iterdir())
        assert copied == sorted(p.name for p in (realdata / name).iterdir())
    assert (tmp_path / ".devdata" / bench.CLASSES).read_bytes() == (realdata / bench.CLASSES).read_bytes()
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    tracked_bytes = sum((REPO / name).stat().st_size for name in tracked.decode().split("\0") if name)
    assert tracked_bytes + sizes[".devdata"] + 8 * 2**20 < 64 * 2**20


def test_gpu_training_epochs_fill_the_budget_from_the_warmup(tmp_path):
    bench = _gpu_train()
    csv_path = tmp_path / "results.csv"
    csv_path.write_text("epoch,  time, train/box_loss\n1, 30.0, 2.0\n2, 34.0, 1.9\n")
    assert bench.read_results_csv(csv_path) == {"epoch": [1.0, 2.0], "time": [30.0, 34.0], "train/box_loss": [2.0, 1.9]}
    assert bench.epochs_for(300, csv_path) == 75  # the second epoch: 4 s (the first also filled the caches)
    assert bench.epochs_for(2, csv_path) == bench.EPOCHS_RANGE[0] == 1  # a slow device still trains
    assert bench.epochs_for(1e6, csv_path) == bench.EPOCHS_RANGE[1]
    csv_path.write_text("epoch,time\n1,\n")  # a half-written row: what ultralytics' own reader answers
    assert bench.read_results_csv(csv_path) == {} == bench.read_results_csv(tmp_path / "absent.csv")


def test_gpu_training_uses_no_more_loader_processes_than_shared_memory_holds(monkeypatch):
    bench = _gpu_train()
    monkeypatch.setattr(bench.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 3 * bench.SHM_PER_WORKER}))
    assert bench.loader_workers(12) == 3 and bench.loader_workers(2) == 2


def test_out_of_fold_models_fit_the_rule_of_the_model_they_stand_in_for(tmp_path, realdata, config_dir):
    """train-detector --leave-out-fold I/2 twice, then refit-fusion --out-of-fold: the rule is fitted on the fold
    models' detections of the photos each left out, and says so in fusion.json and the card; a fold model itself
    can be neither refitted nor shipped."""
    from bioscan_rebuild.detect.shipped import ship
    from bioscan_rebuild.detect.yolo.train import prepare_and_train, refit_fusion

    dev_dirs = [realdata / "imgfilter-dev", realdata / "imgfilter-more"]
    recipe = dict(draw_photo=draw_well_photo, generated=4, epochs=1, imgsz=64, batch=8, real_repeat=1, score=False)
    prepare_and_train(tmp_path / "model", dev_dirs, device="cpu", workers=0, **recipe)
    for fold in (0, 1):
        prepare_and_train(
            tmp_path / f"fold{fold}", dev_dirs, device="cpu", workers=0, leave_out_fold=(fold, 2), **recipe
        )
    card = (tmp_path / "fold1" / "MODEL_CARD.md").read_text()
    assert "--out results/detector-fold1of2 " in card and "--leave-out-fold 1/2" in card
    assert "snakemake results/detector-fold1of2/report.json" in card
    with pytest.raises(ValueError, match="out-of-fold detections only"):
        refit_fusion(tmp_path / "fold0")
    with pytest.raises(ValueError, match="an out-of-fold model.s rule"):
        ship(tmp_path / "fold0", tmp_path / "models")
    folds = [tmp_path / "fold1", tmp_path / "fold0"]
    summary = refit_fusion(tmp_path / "model", classes_csv=realdata / "imgfilter-classes.csv", fold_dirs=folds)
    assert summary["train_fit"]["photos"] == 269
    fitted = json.loads((tmp_path / "model" / "fusion.json").read_text())["fitted_on"]
    assert fitted["out_of_fold"] == {
        "folds": 2,
        "models": [{"fold": f, "sha256": file_sha256(tmp_path / f"fold{f}" / "model.onnx")} for f in (0, 1)],
    }
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert "fitted on out-of-fold detections: 2 models" in card
    assert "--out-of-fold results/detector-fold0of2 --out-of-fold results/detector-fold1of2" in card
    assert ship(tmp_path / "model", tmp_path / "models")["fusion.json"]
    with pytest.raises(ValueError, match="fitted on 2 out-of-fold models: give them again"):
        refit_fusion(tmp_path / "model")  # not silently back to the model's own detections
