"""Inference backends: ``YoloDetector`` (ultralytics + torch) and ``OnnxDetector`` (onnxruntime,
CPU; imports neither torch nor ultralytics), with ultralytics' letterbox, box scaling and NMS
reimplemented in numpy.

Both backends map the model's boxes onto a ``detect.base.Detection`` the same way
(``boxes_to_detection``): no box above ``conf`` -> ``no_object``; otherwise the most confident box
(input-image pixels, ints, x1/y1 exclusive, clipped), ``multiple_candidates`` when another box
above ``conf`` and ``SEPARATE_MIN_SCORE`` barely overlaps it, else ``ok``; ``candidates`` counts every box above
``conf``. They leave ``pixel_count`` and ``mask`` as None
(the image stage counts pixels).
"""

from __future__ import annotations

import ast
from pathlib import Path

import cv2
import numpy as np

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import file_sha256
from bioscan_rebuild.detect.base import Detection, as_rgb8
from bioscan_rebuild.detect.shipped import MODEL, shipped
from bioscan_rebuild.detect.yolo.offline import import_ultralytics

# A second box counts as a separate candidate (-> status "multiple_candidates") when its
# intersection with the top box covers at most this share of the smaller of the two boxes,
SEPARATE_MAX_OVERLAP = 0.3
# and its score is above this bar (the onnx backend's own ``conf``): the fusion runs the model down to 0.01 for
# its measurements, and a 1 % box beside the specimen is no second specimen.
SEPARATE_MIN_SCORE = 0.25
LETTERBOX_FILL = 114  # ultralytics' padding grey


# --------------------------------------------------------------------------
# Geometry: letterbox, NMS, box -> Detection


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
    """Map boxes above conf (xyxy floats, input-image pixels) to a Detection (see the module docstring)."""
    if len(scores) == 0:
        return Detection(status="no_object", box=None, score=0.0, candidates=0)
    boxes = np.asarray(boxes, np.float64)
    top = int(np.argmax(scores))
    x0, y0, x1, y1 = (int(np.floor(v + 0.5)) for v in boxes[top])
    x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    x1, y1 = min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)
    others = np.delete(boxes, top, axis=0)[np.delete(np.asarray(scores), top) > SEPARATE_MIN_SCORE]
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


# Test-time augmentation: the photo as it is, then mirrored left-right, up-down, and both (wells are photographed
# from above, so every mirror image is as likely a photo; the model was trained with these flips).
TTA_FLIPS = ((False, False), (True, False), (False, True), (True, True))
TTA_MERGE_IOU = 0.55  # boxes of different passes at or above this IoU are one object
# Each pass keeps its boxes down to this bar; ``conf`` applies to the merged scores (a pass's weak box still
# counts towards an object the other passes see well).
TTA_PASS_CONF = 0.01


def flip_boxes(boxes: np.ndarray, width: int, height: int, flip_x: bool, flip_y: bool) -> np.ndarray:
    """xyxy boxes of a mirrored photo -> the same boxes in the photo (mirroring is its own inverse)."""
    out = np.asarray(boxes, np.float64).copy()
    if flip_x:
        out[:, [0, 2]] = width - out[:, [2, 0]]
    if flip_y:
        out[:, [1, 3]] = height - out[:, [3, 1]]
    return out


def merge_passes(passes: list[tuple[np.ndarray, np.ndarray]], iou: float = TTA_MERGE_IOU):
    """Weighted box fusion of the boxes of several passes over one photo (each pass: xyxy boxes and scores,
    in the photo's pixels). Greedily by score, a box and every box of the other passes overlapping it by
    ``iou`` or more (the best one per pass) form an object; its box is their score-weighted mean, its score
    the mean over *all* passes of each pass's score for it (0 where a pass missed it), so an object only
    some passes see scores lower. Returns (boxes, scores), best first."""
    n = len(passes)
    boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b, _ in passes])
    scores = np.concatenate([np.asarray(s, np.float64).ravel() for _, s in passes])
    which = np.concatenate([np.full(len(s), k) for k, (_, s) in enumerate(passes)])
    order = np.argsort(-scores, kind="stable")
    used = np.zeros(len(scores), bool)
    out_boxes, out_scores = [], []
    for i in order:
        if used[i]:
            continue
        free = np.flatnonzero(~used)
        near = free[_box_iou_one(boxes[i], boxes[free]) >= iou]
        members = [i]
        for k in range(n):  # the best box of each other pass
            if k == which[i]:
                continue
            theirs = near[which[near] == k]
            if theirs.size:
                members.append(int(theirs[np.argmax(scores[theirs])]))
        used[members] = True
        weights = scores[members]
        out_boxes.append((boxes[members] * weights[:, None]).sum(axis=0) / weights.sum())
        out_scores.append(weights.sum() / n)
    if not out_scores:
        return np.zeros((0, 4), np.float64), np.zeros(0, np.float64)
    out_boxes, out_scores = np.array(out_boxes), np.array(out_scores)
    best = np.argsort(-out_scores, kind="stable")
    return out_boxes[best], out_scores[best]


def _resolve(weights: str | Path | None, default_name: str) -> Path:
    if weights is None:  # the model that ships with the package (detect/models/)
        weights = shipped(MODEL)
    path = Path(weights)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise FileNotFoundError(f"detector weights not found: {path}")
    return path


def _check_shipped_model(path: Path, sha256: str) -> None:
    """The shipped model file must be the one the shipped fusion rule was fitted on (and the card names): one put
    in its place (another export, a damaged copy) ran silently under the ``onnx`` backend."""
    from bioscan_rebuild.core.io import read_json
    from bioscan_rebuild.detect.shipped import FUSION_RULE

    named = (read_json(shipped(FUSION_RULE), "the shipped fusion rule").get("fitted_on") or {}).get("model_sha256")
    if named != sha256:
        raise InputError(
            f"{path}: not the model that ships with this package (sha256 {sha256}; its fusion rule and model card "
            f"name {named}): install the package again, or give your own model as images.detector.weights"
        )


def _check_one_class(path: Path, classes) -> None:
    """A model's class names (``{0: 'specimen'}``; None: not named) must be one class: an 80-class COCO model
    boxed whatever it saw as a specimen."""
    if isinstance(classes, dict | list | tuple) and len(classes) != 1:
        named = list(classes.values() if isinstance(classes, dict) else classes)
        raise InputError(
            f"{path}: a model of {len(named)} classes ({', '.join(map(str, named[:4]))}"
            f"{', ...' if len(named) > 4 else ''}); the detector needs one, the specimen: train one with "
            "bioscan-rebuild train-detector"
        )


def _check_one_class_detector(
    path: Path, input_shape: list, output_shape: list, meta: dict, end2end: bool = False
) -> None:
    """A YOLO detector of one class: input (batch, 3, height, width), output (batch, 4 + 1, boxes) (or an
    end-to-end export's (batch, boxes, 6)), ``names`` of one class when the export names them. Another model (80
    COCO classes, three classes, no image model at all) gave boxes of any class as specimens, or a traceback."""

    def fixed(dim) -> int | None:
        return dim if isinstance(dim, int) else None

    if len(input_shape) != 4 or fixed(input_shape[1]) not in (3, None):
        raise InputError(
            f"{path}: not a photo detector: its input is {list(input_shape)}, not (batch, 3, height, width)"
        )
    names = meta.get("names")
    try:
        _check_one_class(path, ast.literal_eval(names) if names else None)
    except (ValueError, SyntaxError) as error:
        if isinstance(error, InputError):
            raise
    channels = fixed(output_shape[2] if end2end else output_shape[1]) if len(output_shape) == 3 else -1
    expected = 6 if end2end else 5
    try:
        export_args = ast.literal_eval(meta.get("args") or "{}")
    except (ValueError, SyntaxError):
        export_args = {}
    if channels is not None and channels != expected and isinstance(export_args, dict) and export_args.get("nms"):
        raise InputError(  # ultralytics' export(nms=True): boxes already chosen, in a layout read by no backend here
            f"{path}: exported with nms=True (output {list(output_shape)}): export it again with nms=False "
            "(bioscan-rebuild train-detector exports so)"
        )
    if channels is not None and channels != expected:
        raise InputError(
            f"{path}: its output is {list(output_shape)}, not a one-class YOLO detector's (batch, "
            + ("boxes, 6)" if end2end else "4 + 1, boxes)")
            + ": train one with bioscan-rebuild train-detector"
        )


# --------------------------------------------------------------------------
# Backends


# How a photo is letterboxed, a parameter of the learned backends (so of the image stage's store key): "own" =
# to its own rectangle whatever the batch; results cached before (a batch of several shapes squared every photo
# in it) are not reused.
LETTERBOX = "own"


def shape_batches(images: list[np.ndarray], size: int) -> list[list[int]]:
    """The photos' positions in batches of at most ``size``, each of one shape (in first-seen order): a photo's
    letterbox, and so its boxes, must not depend on which photos share its batch."""
    by_shape: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(i)
    return [members[start : start + size] for members in by_shape.values() for start in range(0, len(members), size)]


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
        try:
            import_ultralytics(config_dir)
            import torch
            from ultralytics import YOLO
        except ImportError as error:  # the light install: onnx and fusion run without torch, yolo does not
            raise InputError(
                f"the yolo backend needs torch and ultralytics ({error}): install the yolo extra (pip install "
                "'bioscan-rebuild[yolo]'), or use the onnx or fusion backend"
            ) from None

        self.weights = _resolve(weights, "weights.pt")
        self.sha256 = file_sha256(self.weights)
        if device is None:
            device = "cuda:0" if torch.cuda.is_available() else "cpu"
        self.device = str(device)
        is_cuda = self.device not in ("cpu", "mps") and (self.device.startswith("cuda") or self.device[:1].isdigit())
        self.half = bool(is_cuda if half is None else half)
        try:
            self.model = YOLO(str(self.weights), task="detect")
        except Exception as error:  # torch's and ultralytics' own types: a file that is no checkpoint
            raise InputError(f"{self.weights}: not a YOLO checkpoint ({str(error).strip()[:200]})") from None
        _check_one_class(self.weights, getattr(self.model, "names", None))
        train_args = (getattr(self.model, "ckpt", None) or {}).get("train_args") or {}
        train_imgsz = train_args.get("imgsz")
        self.imgsz = int(imgsz or (train_imgsz if isinstance(train_imgsz, int) else 640))
        self.conf, self.iou = float(conf), float(iou)
        self.batch, self.max_det = int(batch), int(max_det)

    def params(self) -> dict:
        return {
            "backend": self.name,
            "weights_sha256": self.sha256,
            "letterbox": LETTERBOX,
            "conf": self.conf,
            "iou": self.iou,
            "imgsz": self.imgsz,
            "max_det": self.max_det,
            "half": self.half,
            "separate_max_overlap": SEPARATE_MAX_OVERLAP,
            "separate_min_score": SEPARATE_MIN_SCORE,
        }

    def detect(self, image: np.ndarray) -> Detection:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray], halves: list[np.ndarray] | None = None) -> list[Detection]:
        images = [as_rgb8(im) for im in images]
        out: list = [None] * len(images)
        # ultralytics letterboxes a batch of one shape to a rectangle, a mixed one to a square
        for members in shape_batches(images, self.batch):
            self._run_batch(images, members, out)
        return out

    def _run_batch(self, images: list[np.ndarray], members: list[int], out: list) -> None:
        chunk = [images[i] for i in members]
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
        for i, image, result in zip(members, chunk, results, strict=True):
            boxes = result.boxes.xyxy.float().cpu().numpy()
            scores = result.boxes.conf.float().cpu().numpy()
            out[i] = boxes_to_detection(boxes, scores, image.shape[1], image.shape[0])


class OnnxDetector:
    """The exported model on onnxruntime (CPU). Same letterbox, NMS and Detection mapping as
    YoloDetector; needs only numpy, opencv and onnxruntime."""

    name = "onnx"

    def __init__(
        self,
        weights: str | Path | None = None,
        conf: float = 0.25,
        iou: float = 0.5,
        imgsz: int | None = None,
        batch: int = 16,
        max_det: int = 100,
        threads: int | None = None,
        tta: bool = False,
    ):
        """``tta``: also run the photo mirrored three ways and merge the four passes' boxes (``merge_passes``;
        each pass down to ``TTA_PASS_CONF``, then ``conf`` on the merged scores); four times the inference."""
        import onnxruntime as ort

        self.weights = _resolve(weights, "model.onnx")
        self.sha256 = file_sha256(self.weights)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.weights), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own types (InvalidProtobuf, Fail): a file that is no model
            raise InputError(f"{self.weights}: not an ONNX model ({str(error).strip()[:200]})") from None
        if weights is None:  # the shipped model: the one its shipped rule and card name, not a file put in its place
            _check_shipped_model(self.weights, self.sha256)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.stride = int(meta.get("stride", 32))
        self.end2end = str(meta.get("end2end", "False")) == "True"
        meta_imgsz = ast.literal_eval(meta["imgsz"]) if "imgsz" in meta else None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        _check_one_class_detector(self.weights, inp.shape, self.session.get_outputs()[0].shape, meta, self.end2end)
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
        self.tta = bool(tta)

    def params(self) -> dict:
        params = {
            "backend": self.name,
            "onnx_sha256": self.sha256,
            "letterbox": LETTERBOX,
            "conf": self.conf,
            "iou": self.iou,
            "imgsz": self.imgsz if self.fixed_hw is None else list(self.fixed_hw),
            "max_det": self.max_det,
            "separate_max_overlap": SEPARATE_MAX_OVERLAP,
            "separate_min_score": SEPARATE_MIN_SCORE,
        }
        if self.tta:  # only when on, so that the stage key of a run without it stays as it was
            params["tta"] = {
                "flips": [list(f) for f in TTA_FLIPS],
                "merge_iou": TTA_MERGE_IOU,
                "pass_conf": TTA_PASS_CONF,
            }
        return params

    def detect(self, image: np.ndarray) -> Detection:
        return self.detect_batch([image])[0]

    def _preprocess(self, chunk: list[np.ndarray]) -> np.ndarray:
        """The model's input for photos of one shape: each letterboxed to its own rectangle (a multiple of the
        stride) unless the model takes one fixed size."""
        if len({im.shape for im in chunk}) > 1:
            raise ValueError("one shape per batch: a photo's letterbox must not depend on the photos beside it")
        target, auto = (self.fixed_hw, False) if self.fixed_hw else (self.imgsz, True)
        boxed = [letterbox(im, target, auto, self.stride) for im in chunk]
        if self.fixed_batch and len(boxed) < self.fixed_batch:
            boxed += [boxed[-1]] * (self.fixed_batch - len(boxed))
        blob = np.stack(boxed).transpose(0, 3, 1, 2).astype(np.float32)
        blob *= np.float32(1 / 255)
        return np.ascontiguousarray(blob)

    def _boxes(self, images: list[np.ndarray], conf: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per photo, the model's boxes above ``conf`` after NMS (xyxy, the photo's pixels) and scores. Photos run
        in batches of one shape, so what a photo gets never depends on which photos share its call."""
        out: list = [None] * len(images)
        for members in shape_batches(images, self.batch):
            self._run_batch(images, members, conf, out)
        return out

    def _run_batch(self, images: list[np.ndarray], members: list[int], conf: float, out: list) -> None:
        """``out[i]`` = (boxes, scores) for each photo ``images[i]``, i in ``members`` (one shape)."""
        chunk = [images[i] for i in members]
        blob = self._preprocess(chunk)
        preds = self.session.run(None, {self.input_name: blob})[0]
        for i, image, pred in zip(members, chunk, preds[: len(chunk)], strict=True):
            if self.end2end:  # (max_det, 6): x1, y1, x2, y2, score, class
                keep = pred[:, 4] > conf
                boxes, scores = pred[keep, :4], pred[keep, 4]
                boxes, scores = boxes[: self.max_det], scores[: self.max_det]
            else:
                boxes, scores = nms_numpy(pred, conf, self.iou, self.max_det)
            if len(scores):
                boxes = scale_boxes(blob.shape[2:], boxes, image.shape[:2])
            out[i] = (boxes, scores)

    def detect_batch(self, images: list[np.ndarray], halves: list[np.ndarray] | None = None) -> list[Detection]:
        images = [as_rgb8(im) for im in images]
        if not self.tta:
            found = self._boxes(images, self.conf)
        else:
            flips = TTA_FLIPS
            mirrored = [
                np.ascontiguousarray(im[:: -1 if fy else 1, :: -1 if fx else 1]) for im in images for fx, fy in flips
            ]
            passes = self._boxes(mirrored, min(self.conf, TTA_PASS_CONF))
            found = []
            for i, image in enumerate(images):
                height, width = image.shape[:2]
                mine = passes[i * len(flips) : (i + 1) * len(flips)]
                boxes, scores = merge_passes(
                    [(flip_boxes(b, width, height, fx, fy), s) for (b, s), (fx, fy) in zip(mine, flips)]
                )
                found.append((boxes[scores > self.conf], scores[scores > self.conf]))
        return [boxes_to_detection(b, s, im.shape[1], im.shape[0]) for (b, s), im in zip(found, images, strict=True)]
