"""YOLO specimen detector: dataset preparation, offline training, and two inference backends.

- ``prepare_yolo_dataset``: a one-class ("specimen") YOLO dataset from the 'train' half of the
  real dev set (``shared/realdata/imgfilter-dev``, see ``detect.dev_split``) plus generated well
  photos (``sample_images.draw_well_photo``) with exact boxes. Deterministic.
- ``train_detector``: trains a YOLO model from a ``*.yaml`` (no pretrained weights, nothing is
  downloaded), writes ``weights.pt``, exports ``model.onnx`` and writes ``report.json``.
- ``YoloDetector`` (backend ``yolo``): ultralytics + torch; GPU when present, else CPU; batched.
- ``OnnxDetector`` (backend ``onnx``): the exported model on onnxruntime (CPU), with the same
  letterbox and NMS as ultralytics reimplemented in numpy; imports neither torch nor ultralytics.

Both backends map the model's boxes onto a ``detect.Detection`` the same way: no box above
``conf`` -> ``no_object``; otherwise the most confident box (input-image pixels, ints, x1/y1
exclusive, clipped), ``multiple_candidates`` when another box above ``conf`` barely overlaps it,
else ``ok``. They leave ``pixel_count`` and ``mask`` as None (the image stage counts pixels).

Command line::

    python -m bioscan_rebuild.detect.yolo train --out DIR [--epochs N] [--imgsz N] [--generated N] ...
    python -m bioscan_rebuild.detect.yolo prepare --out DIR [--generated N] ...

ultralytics must never reach the network: call ``configure_offline`` before it is first imported
(every function here does so itself).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from bioscan_rebuild.core.io import file_sha256
from bioscan_rebuild.detect.base import Detection
from bioscan_rebuild.detect.evaluate import dev_split, load_coco_ground_truth

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DEV_DIR = REPO.parent / "shared" / "realdata" / "imgfilter-dev"
CLASS_NAME = "specimen"
DEFAULT_MODEL_YAML = "yolo11n.yaml"

# A second box counts as a separate candidate (-> status "multiple_candidates") when its
# intersection with the top box covers at most this share of the smaller of the two boxes.
SEPARATE_MAX_OVERLAP = 0.3
# Generated photos: share of each kind (sample_images.KINDS).
GENERATED_KIND_MIX = {"specimen": 0.70, "empty": 0.15, "edge": 0.15}
LETTERBOX_FILL = 114  # ultralytics' padding grey

_OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "YOLO_VERBOSE": "False", "MPLBACKEND": "Agg"}
_configured_dir: Path | None = None


# --------------------------------------------------------------------------
# Offline configuration


def _default_config_dir() -> Path:
    if env := os.environ.get("BIOSCAN_YOLO_CONFIG_DIR") or os.environ.get("YOLO_CONFIG_DIR"):
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bioscan-rebuild" / "ultralytics"
    with contextlib.suppress(OSError):
        cache.mkdir(parents=True, exist_ok=True)
        if os.access(cache, os.W_OK):
            return cache
    return Path(tempfile.gettempdir()) / f"bioscan-rebuild-ultralytics-{os.getuid()}"


def _find_ttf() -> Path | None:
    import importlib.util

    candidates = []
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")
    candidates += [
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
    ]
    return next((p for p in candidates if p.is_file()), None)


def configure_offline(config_dir: str | Path | None = None) -> Path:
    """Point ultralytics at a writable config dir with a local font and switch off every download,
    auto-install, sync and logging integration. Call before ultralytics is imported; idempotent.
    Returns the config dir (ultralytics keeps its settings under ``<dir>/Ultralytics``)."""
    global _configured_dir
    directory = Path(config_dir) if config_dir else (_configured_dir or _default_config_dir())
    directory = directory.expanduser().resolve()
    if "ultralytics" in sys.modules and _configured_dir is None:
        current = os.environ.get("YOLO_CONFIG_DIR")
        if current is None or Path(current).resolve() != directory or os.environ.get("YOLO_OFFLINE") != "1":
            print(
                "warning: ultralytics was imported before detect_yolo.configure_offline(); "
                "its online checks may already have run",
                file=sys.stderr,
            )
    os.environ["YOLO_CONFIG_DIR"] = str(directory)
    for key, value in _OFFLINE_ENV.items():
        if key == "MPLBACKEND":
            os.environ.setdefault(key, value)
        else:
            os.environ[key] = value
    fonts = directory / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    ttf = _find_ttf()
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if ttf and not (fonts / name).exists():
            shutil.copyfile(ttf, fonts / name)
    _configured_dir = directory
    if "ultralytics" in sys.modules:
        _update_settings(directory)
    return directory


def _update_settings(directory: Path) -> None:
    from ultralytics import settings

    wanted = {
        "sync": False,
        "clearml": False,
        "comet": False,
        "dvc": False,
        "mlflow": False,
        "raytune": False,
        "tensorboard": False,
        "wandb": False,
        "vscode_msg": False,
        "openvino_msg": False,
        "datasets_dir": str(directory / "datasets"),
        "weights_dir": str(directory / "weights"),
        "runs_dir": str(directory / "runs"),
    }
    changes = {k: v for k, v in wanted.items() if k in settings and settings[k] != v}
    if changes:
        settings.update(changes)


def _import_ultralytics(config_dir: str | Path | None = None):
    configure_offline(config_dir)
    import ultralytics

    _update_settings(_configured_dir)
    return ultralytics


# --------------------------------------------------------------------------
# Small helpers


sha256_file = file_sha256  # name kept for callers of this module


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    packages = ("ultralytics", "torch", "torchvision", "onnx", "onnxruntime", "onnxslim", "numpy", "opencv-python")
    return {"python": platform.python_version(), **{p: _version(p) for p in packages}}


def _yolo_label(box, width: int, height: int) -> str:
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = max(0.0, x0), min(float(width), x1)
    y0, y1 = max(0.0, y0), min(float(height), y1)
    cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    return f"0 {cx:.6f} {cy:.6f} {(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}\n"


def _real_val(processid: str) -> bool:
    """A few real 'train'-half images (~1/16, by the third md5 hex digit) validate instead of train."""
    return hashlib.md5(processid.encode()).hexdigest()[2] == "0"


# --------------------------------------------------------------------------
# Dataset


def prepare_yolo_dataset(
    out_dir: str | Path,
    coco_path: str | Path | None = None,
    image_dir: str | Path | None = None,
    n_generated: int = 400,
    seed: int = 0,
    include_holdout: bool = False,
    real: bool = True,
    val_fraction: float = 0.1,
    jpeg_quality: int = 90,
    real_repeat: int = 1,
) -> Path:
    """Write a one-class YOLO dataset under out_dir and return its data.yaml.

    Real images: the 'train' half of the dev set (``coco_path``, default
    ``shared/realdata/imgfilter-dev/coco_annotations.json``; images in ``image_dir``, default the
    COCO file's folder); the 'holdout' half only with ``include_holdout`` (for a final model; it
    then cannot be scored on the holdout). Empty wells get empty label files. ~1/16 of the real
    images go to validation. ``real=False`` uses generated photos only.
    Generated: ``n_generated`` photos (70% specimen, 15% empty, 15% edge), the last
    ``val_fraction`` of them for validation. Real images are copied into out_dir only (training
    ones ``real_repeat`` times, to weigh the few real photos up against the generated ones).
    """
    from bioscan_rebuild.synth.photos import draw_well_photo, encode_jpeg

    out = Path(out_dir).resolve()
    if out.exists():
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub, ignore_errors=True)
        for stale in out.glob("labels/*.cache"):
            stale.unlink()
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)

    counts = {f"{split}_{src}": 0 for split in ("train", "val") for src in ("real", "real_empty", "gen", "gen_empty")}
    real_source = None
    if real:
        coco = Path(coco_path) if coco_path else DEFAULT_DEV_DIR / "coco_annotations.json"
        if not coco.is_file():
            raise FileNotFoundError(f"{coco} is absent: pass coco_path, or real=False (--no-real) for generated only")
        images = Path(image_dir) if image_dir else coco.parent
        real_source = {
            "coco": str(coco),
            "coco_sha256": sha256_file(coco),
            "include_holdout": include_holdout,
            "real_repeat": int(real_repeat),
        }
        from PIL import Image

        for truth in load_coco_ground_truth(coco):
            if dev_split(truth.processid) == "holdout" and not include_holdout:
                continue
            split = "val" if _real_val(truth.processid) else "train"
            src = images / truth.file_name
            with Image.open(src) as image:
                width, height = image.size
            label = _yolo_label(truth.box, width, height) if truth.box else ""
            stem = Path(truth.file_name).stem
            for copy in range(1 if split == "val" else max(1, int(real_repeat))):
                name = stem if copy == 0 else f"{stem}.copy{copy}"
                shutil.copyfile(src, out / "images" / split / f"{name}.jpg")
                (out / "labels" / split / f"{name}.txt").write_text(label)
            counts[f"{split}_real" + ("_empty" if truth.box is None else "")] += 1

    n_generated = int(n_generated)
    n_val = 0 if n_generated < 2 else max(1, int(round(n_generated * val_fraction)))
    kinds = list(GENERATED_KIND_MIX)
    kind_rng = np.random.default_rng([seed, 7919])
    drawn_kinds = kind_rng.choice(len(kinds), size=n_generated, p=list(GENERATED_KIND_MIX.values()))
    for i in range(n_generated):
        kind = kinds[int(drawn_kinds[i])]
        photo = draw_well_photo(np.random.default_rng([seed, i]), kind)
        split = "val" if i >= n_generated - n_val else "train"
        name = f"gen{seed}_{i:05d}_{kind}"
        (out / "images" / split / f"{name}.jpg").write_bytes(encode_jpeg(photo.image, jpeg_quality))
        height, width = photo.image.shape[:2]
        label = _yolo_label(photo.box, width, height) if photo.box else ""
        (out / "labels" / split / f"{name}.txt").write_text(label)
        counts[f"{split}_gen" + ("_empty" if photo.box is None else "")] += 1

    if not any(counts[k] for k in counts if k.startswith("val")):
        raise ValueError("the dataset has no validation images (give more generated photos or real ones)")
    data_yaml = out / "data.yaml"
    data_yaml.write_text(
        f"# written by bioscan_rebuild.detect.yolo.prepare_yolo_dataset\n"
        f"path: {json.dumps(str(out))}\ntrain: images/train\nval: images/val\nnames:\n  0: {CLASS_NAME}\n"
    )
    manifest = {
        "seed": seed,
        "n_generated": n_generated,
        "generated_kind_mix": GENERATED_KIND_MIX,
        "jpeg_quality": jpeg_quality,
        "real": real_source,
        "counts": counts,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return data_yaml


# --------------------------------------------------------------------------
# Training


def train_detector(
    data_yaml: str | Path,
    out_dir: str | Path,
    epochs: int = 50,
    imgsz: int = 320,
    model_yaml: str = DEFAULT_MODEL_YAML,
    device: str | None = None,
    seed: int = 0,
    batch: int = 16,
    eval_dev_dir: str | Path | None = None,
    workers: int = 1,
    cache: str | bool = "ram",
    patience: int = 100,
    opset: int = 17,
    config_dir: str | Path | None = None,
    verbose: bool = False,
    extra_args: dict | None = None,
) -> dict:
    """Train from scratch (offline), export ONNX, optionally score both backends on the dev
    'holdout' half; writes out_dir/{weights.pt, model.onnx, report.json} and returns the report."""
    _import_ultralytics(config_dir)
    import torch
    from ultralytics import YOLO

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if device is None:
        device = "0" if torch.cuda.is_available() else "cpu"
    args = dict(
        data=str(Path(data_yaml).resolve()),
        epochs=int(epochs),
        imgsz=int(imgsz),
        batch=int(batch),
        device=device,
        seed=int(seed),
        deterministic=True,
        workers=int(workers),
        cache=cache,
        plots=False,
        amp=False,
        patience=int(patience),
        flipud=0.5,  # photos are taken from above: no preferred up/down
        project=str(out / "runs"),
        name="train",
        exist_ok=True,
        verbose=verbose,
        pretrained=False,
    )
    args.update(extra_args or {})
    shutil.rmtree(out / "runs" / "train", ignore_errors=True)
    model = YOLO(model_yaml, task="detect")
    t0 = time.perf_counter()
    model.train(**args)
    train_seconds = time.perf_counter() - t0
    trainer = model.trainer
    chosen = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    weights = out / "weights.pt"
    shutil.copyfile(chosen, weights)

    onnx_path = export_onnx(weights, out / "model.onnx", imgsz=imgsz, opset=opset, config_dir=config_dir)
    metrics = {}
    results_csv = Path(trainer.save_dir) / "results.csv"
    if results_csv.is_file():
        lines = results_csv.read_text().strip().splitlines()
        if len(lines) > 1:
            header = [h.strip() for h in lines[0].split(",")]
            metrics = {h: float(v) for h, v in zip(header, lines[-1].split(",")) if v.strip()}
    data_dir = Path(data_yaml).resolve().parent
    manifest = data_dir / "manifest.json"
    report = {
        "model_yaml": model_yaml,
        "train_args": {k: (str(v) if isinstance(v, Path) else v) for k, v in args.items()},
        "device_name": torch.cuda.get_device_name(0) if device not in ("cpu", None) else platform.processor() or "cpu",
        "train_seconds": round(train_seconds, 1),
        "weights_from": chosen.name,
        "final_val_metrics": metrics,
        "dataset": json.loads(manifest.read_text()) if manifest.is_file() else None,
        "versions": versions(),
        "weights": {"path": weights.name, "sha256": sha256_file(weights)},
        "onnx": {"path": onnx_path.name, "sha256": sha256_file(onnx_path), "opset": opset, "dynamic": True},
        "separate_max_overlap": SEPARATE_MAX_OVERLAP,
    }
    if eval_dev_dir:
        report["holdout_eval"] = evaluate_holdout(weights, onnx_path, eval_dev_dir, imgsz=imgsz, device=device)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def export_onnx(
    weights: str | Path,
    onnx_path: str | Path,
    imgsz: int = 320,
    opset: int = 17,
    dynamic: bool = True,
    config_dir: str | Path | None = None,
) -> Path:
    """Export weights.pt to ONNX (dynamic batch and size by default, so the ONNX backend can use
    the same minimal-rectangle letterbox as ultralytics' predictor)."""
    _import_ultralytics(config_dir)
    from ultralytics import YOLO

    weights = Path(weights).resolve()
    with tempfile.TemporaryDirectory(prefix="yolo-export-") as tmp:
        staged = Path(tmp) / "model.pt"
        shutil.copyfile(weights, staged)
        exported = YOLO(str(staged), task="detect").export(
            format="onnx", imgsz=int(imgsz), dynamic=dynamic, simplify=True, opset=opset, device="cpu", verbose=False
        )
        target = Path(onnx_path).resolve()
        shutil.move(str(exported), target)
    return target


def evaluate_holdout(
    weights: str | Path,
    onnx_path: str | Path | None,
    dev_dir: str | Path,
    imgsz: int | None = None,
    device: str | None = None,
    subset: str = "holdout",
) -> dict:
    """detect_eval.evaluate summaries of the yolo (and onnx) backends on one dev half."""
    from bioscan_rebuild.detect.evaluate import evaluate

    dev_dir = Path(dev_dir)
    truths = [t for t in load_coco_ground_truth(dev_dir / "coco_annotations.json") if dev_split(t.processid) == subset]
    result = {"subset": subset, "images": len(truths)}
    detectors = {"yolo": YoloDetector(weights, device=device, imgsz=imgsz)}
    if onnx_path:
        detectors["onnx"] = OnnxDetector(onnx_path, imgsz=imgsz)
    for name, detector in detectors.items():
        result[name] = evaluate(detector, truths, dev_dir)["summary"]
    return result


# --------------------------------------------------------------------------
# Shared geometry: letterbox, NMS, box -> Detection


def letterbox_params(shape_hw: tuple[int, int], new_shape: int | tuple[int, int], auto: bool, stride: int = 32):
    """ultralytics LetterBox.get_params (center=True, scaleup=True): (new_unpad_wh, top, bottom, left, right)."""
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    h, w = shape_hw
    r = min(new_shape[0] / h, new_shape[1] / w)
    new_unpad = (max(round(w * r), 1), max(round(h * r), 1))
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return new_unpad, top, bottom, left, right


def letterbox(image: np.ndarray, new_shape: int | tuple[int, int], auto: bool, stride: int = 32) -> np.ndarray:
    new_unpad, top, bottom, left, right = letterbox_params(image.shape[:2], new_shape, auto, stride)
    if (image.shape[1], image.shape[0]) != new_unpad:
        image = cv2.resize(image, new_unpad, interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(LETTERBOX_FILL,) * 3)


def scale_boxes(input_hw: tuple[int, int], boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """ultralytics ops.scale_boxes (ratio_pad=None) then clip_boxes, for xyxy boxes."""
    gain = min(input_hw[0] / image_hw[0], input_hw[1] / image_hw[1])
    new_h, new_w = (max(round(x * gain), 1) for x in image_hw)
    gain_y, gain_x = new_h / image_hw[0], new_w / image_hw[1]
    pad_x = round((input_hw[1] - new_w) / 2 - 0.1)
    pad_y = round((input_hw[0] - new_h) / 2 - 0.1)
    boxes = boxes.astype(np.float64, copy=True)
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - pad_x) / gain_x
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - pad_y) / gain_y
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, image_hw[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, image_hw[0])
    return boxes


def _box_iou_one(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def nms_numpy(
    pred: np.ndarray, conf: float, iou: float, max_det: int = 300, max_nms: int = 30000
) -> tuple[np.ndarray, np.ndarray]:
    """ultralytics non_max_suppression for one image, class-agnostic (single class):
    pred (4 + nc, anchors) with xywh boxes -> (xyxy boxes (n, 4), scores (n,)), best first."""
    scores = pred[4:].max(axis=0)
    keep = scores > conf
    if not keep.any():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    xywh, scores = pred[:4, keep].T, scores[keep]
    boxes = np.empty_like(xywh)
    boxes[:, :2] = xywh[:, :2] - xywh[:, 2:] / 2
    boxes[:, 2:] = xywh[:, :2] + xywh[:, 2:] / 2
    order = np.argsort(-scores, kind="stable")[:max_nms]
    boxes, scores = boxes[order], scores[order]
    chosen = []
    alive = np.ones(len(scores), bool)
    for i in range(len(scores)):
        if not alive[i]:
            continue
        chosen.append(i)
        if len(chosen) >= max_det:
            break
        rest = np.flatnonzero(alive[i + 1 :]) + i + 1
        if rest.size:
            alive[rest[_box_iou_one(boxes[i], boxes[rest]) > iou]] = False
    return boxes[chosen], scores[chosen]


def boxes_to_detection(boxes: np.ndarray, scores: np.ndarray, width: int, height: int) -> Detection:
    """Map boxes above conf (xyxy floats, input-image pixels) to a Detection (see module doc)."""
    if len(scores) == 0:
        return Detection(status="no_object", box=None, score=0.0, candidates=0)
    boxes = np.asarray(boxes, np.float64)
    top = int(np.argmax(scores))
    x0, y0, x1, y1 = (int(np.floor(v + 0.5)) for v in boxes[top])
    x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    x1, y1 = min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)
    others = np.delete(boxes, top, axis=0)
    separate = 0
    if len(others):
        tb = boxes[top]
        ix = np.clip(np.minimum(tb[2], others[:, 2]) - np.maximum(tb[0], others[:, 0]), 0, None)
        iy = np.clip(np.minimum(tb[3], others[:, 3]) - np.maximum(tb[1], others[:, 1]), 0, None)
        areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
        smaller = np.minimum((tb[2] - tb[0]) * (tb[3] - tb[1]), areas)
        separate = int(np.sum(ix * iy <= SEPARATE_MAX_OVERLAP * np.maximum(smaller, 1e-12)))
    return Detection(
        status="multiple_candidates" if separate else "ok",
        box=(x0, y0, x1, y1),
        pixel_count=None,
        score=float(scores[top]),
        candidates=int(len(scores)),
    )


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[..., :3]
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB, got {image.dtype}")
    return image


def _resolve(weights: str | Path, default_name: str) -> Path:
    path = Path(weights)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise FileNotFoundError(f"detector weights not found: {path}")
    return path


# --------------------------------------------------------------------------
# Backends


class YoloDetector:
    """ultralytics YOLO on torch; CUDA (half precision) when available, else CPU (float32)."""

    name = "yolo"

    def __init__(
        self,
        weights: str | Path,
        device: str | None = None,
        conf: float = 0.25,
        iou: float = 0.5,
        imgsz: int | None = None,
        batch: int = 32,
        half: bool | None = None,
        max_det: int = 100,
        config_dir: str | Path | None = None,
    ):
        _import_ultralytics(config_dir)
        import torch
        from ultralytics import YOLO

        self.weights = _resolve(weights, "weights.pt")
        self.sha256 = sha256_file(self.weights)
        if device is None:
            device = "cuda:0" if torch.cuda.is_available() else "cpu"
        self.device = str(device)
        is_cuda = self.device not in ("cpu", "mps") and (self.device.startswith("cuda") or self.device[:1].isdigit())
        self.half = bool(is_cuda if half is None else half)
        self.model = YOLO(str(self.weights), task="detect")
        train_args = (getattr(self.model, "ckpt", None) or {}).get("train_args") or {}
        train_imgsz = train_args.get("imgsz")
        self.imgsz = int(imgsz or (train_imgsz if isinstance(train_imgsz, int) else 640))
        self.conf, self.iou = float(conf), float(iou)
        self.batch, self.max_det = int(batch), int(max_det)

    def params(self) -> dict:
        return {
            "backend": self.name,
            "weights_sha256": self.sha256,
            "conf": self.conf,
            "iou": self.iou,
            "imgsz": self.imgsz,
            "max_det": self.max_det,
            "half": self.half,
            "separate_max_overlap": SEPARATE_MAX_OVERLAP,
        }

    def detect(self, image: np.ndarray) -> Detection:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray], halves: list[np.ndarray] | None = None) -> list[Detection]:
        out: list[Detection] = []
        for start in range(0, len(images), self.batch):
            chunk = [_as_rgb(im) for im in images[start : start + self.batch]]
            bgr = [np.ascontiguousarray(im[..., ::-1]) for im in chunk]
            results = self.model.predict(
                bgr,
                imgsz=self.imgsz,
                conf=self.conf,
                iou=self.iou,
                device=self.device,
                half=self.half,
                max_det=self.max_det,
                verbose=False,
            )
            for image, result in zip(chunk, results, strict=True):
                boxes = result.boxes.xyxy.float().cpu().numpy()
                scores = result.boxes.conf.float().cpu().numpy()
                out.append(boxes_to_detection(boxes, scores, image.shape[1], image.shape[0]))
        return out


class OnnxDetector:
    """The exported model on onnxruntime (CPU). Same letterbox, NMS and Detection mapping as
    YoloDetector; needs only numpy, opencv and onnxruntime."""

    name = "onnx"

    def __init__(
        self,
        weights: str | Path,
        conf: float = 0.25,
        iou: float = 0.5,
        imgsz: int | None = None,
        batch: int = 16,
        max_det: int = 100,
        threads: int | None = None,
    ):
        import onnxruntime as ort

        self.weights = _resolve(weights, "model.onnx")
        self.sha256 = sha256_file(self.weights)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(self.weights), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.stride = int(meta.get("stride", 32))
        self.end2end = str(meta.get("end2end", "False")) == "True"
        meta_imgsz = ast.literal_eval(meta["imgsz"]) if "imgsz" in meta else None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        batch_dim, _, h_dim, w_dim = inp.shape
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) else None
        self.fixed_hw = (h_dim, w_dim) if isinstance(h_dim, int) and isinstance(w_dim, int) else None
        if self.fixed_hw:
            self.imgsz = self.fixed_hw[0] if self.fixed_hw[0] == self.fixed_hw[1] else None
        else:
            fallback = meta_imgsz[0] if isinstance(meta_imgsz, list | tuple) else meta_imgsz
            self.imgsz = int(imgsz or fallback or 640)
        self.conf, self.iou = float(conf), float(iou)
        self.batch = self.fixed_batch or int(batch)
        self.max_det = int(max_det)

    def params(self) -> dict:
        return {
            "backend": self.name,
            "onnx_sha256": self.sha256,
            "conf": self.conf,
            "iou": self.iou,
            "imgsz": self.imgsz if self.fixed_hw is None else list(self.fixed_hw),
            "max_det": self.max_det,
            "separate_max_overlap": SEPARATE_MAX_OVERLAP,
        }

    def detect(self, image: np.ndarray) -> Detection:
        return self.detect_batch([image])[0]

    def _preprocess(self, chunk: list[np.ndarray]) -> np.ndarray:
        if self.fixed_hw:
            target, auto = self.fixed_hw, False
        else:
            target, auto = self.imgsz, len({im.shape for im in chunk}) == 1
        boxed = [letterbox(im, target, auto, self.stride) for im in chunk]
        if self.fixed_batch and len(boxed) < self.fixed_batch:
            boxed += [boxed[-1]] * (self.fixed_batch - len(boxed))
        blob = np.stack(boxed).transpose(0, 3, 1, 2).astype(np.float32)
        blob *= np.float32(1 / 255)
        return np.ascontiguousarray(blob)

    def detect_batch(self, images: list[np.ndarray], halves: list[np.ndarray] | None = None) -> list[Detection]:
        out: list[Detection] = []
        for start in range(0, len(images), self.batch):
            chunk = [_as_rgb(im) for im in images[start : start + self.batch]]
            blob = self._preprocess(chunk)
            preds = self.session.run(None, {self.input_name: blob})[0]
            for image, pred in zip(chunk, preds[: len(chunk)], strict=True):
                if self.end2end:  # (max_det, 6): x1, y1, x2, y2, score, class
                    keep = pred[:, 4] > self.conf
                    boxes, scores = pred[keep, :4], pred[keep, 4]
                    boxes, scores = boxes[: self.max_det], scores[: self.max_det]
                else:
                    boxes, scores = nms_numpy(pred, self.conf, self.iou, self.max_det)
                if len(scores):
                    boxes = scale_boxes(blob.shape[2:], boxes, image.shape[:2])
                out.append(boxes_to_detection(boxes, scores, image.shape[1], image.shape[0]))
        return out


# --------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bioscan_rebuild.detect.yolo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def dataset_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, type=Path, help="output folder")
        p.add_argument("--generated", type=int, default=400, help="generated photos (default 400)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--dev-dir", type=Path, default=DEFAULT_DEV_DIR, help="real dev set (imgfilter-dev)")
        p.add_argument("--no-real", action="store_true", help="generated photos only")
        p.add_argument("--include-holdout", action="store_true", help="train on the holdout half too (no eval)")
        p.add_argument("--real-repeat", type=int, default=2, help="copies of each real training photo (default 2)")

    prep = sub.add_parser("prepare", help="write the YOLO dataset only")
    dataset_args(prep)
    train = sub.add_parser("train", help="prepare the dataset, train, export ONNX, score on the holdout")
    dataset_args(train)
    train.add_argument("--epochs", type=int, default=50)
    train.add_argument("--imgsz", type=int, default=320)
    train.add_argument("--batch", type=int, default=16)
    train.add_argument("--model", default=DEFAULT_MODEL_YAML, help="ultralytics model yaml (from scratch)")
    train.add_argument("--device", default=None, help="'cpu', '0', ... (default: GPU when present)")
    train.add_argument("--workers", type=int, default=1)
    train.add_argument("--no-eval", action="store_true", help="skip scoring on the dev holdout half")
    train.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    configure_offline()
    dataset_dir = args.out / "dataset" if args.command == "train" else args.out
    coco = args.dev_dir / "coco_annotations.json"
    data_yaml = prepare_yolo_dataset(
        dataset_dir,
        coco_path=None if args.no_real else coco,
        image_dir=None if args.no_real else args.dev_dir,
        n_generated=args.generated,
        seed=args.seed,
        include_holdout=args.include_holdout,
        real=not args.no_real,
        real_repeat=args.real_repeat,
    )
    if args.command == "prepare":
        print(json.dumps(json.loads((dataset_dir / "manifest.json").read_text()), indent=2))
        return 0
    eval_dir = None if (args.no_eval or args.include_holdout or not coco.is_file()) else args.dev_dir
    report = train_detector(
        data_yaml,
        args.out,
        epochs=args.epochs,
        imgsz=args.imgsz,
        model_yaml=args.model,
        device=args.device,
        seed=args.seed,
        batch=args.batch,
        eval_dev_dir=eval_dir,
        workers=args.workers,
        verbose=args.verbose,
    )
    summary = {k: report[k] for k in ("weights", "onnx", "train_seconds", "final_val_metrics")}
    summary["holdout_eval"] = report.get("holdout_eval")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
