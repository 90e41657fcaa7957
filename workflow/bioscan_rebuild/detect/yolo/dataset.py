"""A one-class ("specimen") YOLO dataset from real dev photos (COCO truth) and generated photos."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps

from bioscan_rebuild.core.boxes import rotate_box_ccw
from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import file_sha256
from bioscan_rebuild.core.pilsafe import encode_jpeg
from bioscan_rebuild.detect.evaluate import dev_fold, dev_split, load_coco_ground_truth

CLASS_NAME = "specimen"
# Generated photos: share of each kind passed to ``draw_photo``.
GENERATED_KIND_MIX = {"specimen": 0.70, "empty": 0.15, "edge": 0.15}


class GeneratedPhoto(Protocol):
    image: np.ndarray  # (height, width, 3) uint8, RGB
    box: tuple[int, int, int, int] | None  # (x0, y0, x1, y1), x1/y1 exclusive; None = empty well


# (rng, kind) -> photo; kind is a key of GENERATED_KIND_MIX.
DrawPhoto = Callable[[np.random.Generator, str], GeneratedPhoto]


ORIENTATION_TAG = 0x0112  # EXIF Orientation


def _yolo_label(box, width: int, height: int) -> str:
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = max(0.0, x0), min(float(width), x1)
    y0, y1 = max(0.0, y0), min(float(height), y1)
    if x1 <= x0 or y1 <= y0:  # a negative width trains the model on nonsense
        raise ValueError(f"box {tuple(box)} lies outside a {width}x{height} photo")
    cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    return f"0 {cx:.6f} {cy:.6f} {(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}\n"


def _real_val(processid: str) -> bool:
    """A few real 'train'-half images (~1/16, by the third md5 hex digit) validate instead of train."""
    return hashlib.md5(processid.encode()).hexdigest()[2] == "0"


def prepare_yolo_dataset(
    out_dir: str | Path,
    coco_path: str | Path | list[str | Path] | None = None,
    image_dir: str | Path | None = None,
    n_generated: int = 400,
    seed: int = 0,
    include_holdout: bool = False,
    real: bool = True,
    val_fraction: float = 0.1,
    jpeg_quality: int = 90,
    real_repeat: int = 1,
    draw_photo: DrawPhoto | None = None,
    leave_out_fold: tuple[int, int] | None = None,
) -> Path:
    """Write a one-class YOLO dataset under out_dir and return its data.yaml.

    Real images (``real=True``): the 'train' half of the real dev sets (COCO file ``coco_path``, or a list of
    them; images in ``image_dir``, default each COCO file's folder; halves by ``detect.evaluate.dev_split``);
    the 'holdout' half only with ``include_holdout`` (for a final model; it then cannot be scored
    on the holdout). Empty wells get empty label files. ~1/16 of the real images go to validation.
    Real images are copied into out_dir only (training ones ``real_repeat`` times, to weigh the few
    real photos up against the generated ones); copy k is turned k quarter turns, so that with the
    trainer's up/down and left/right flips a specimen is seen in all eight orientations (wells are
    photographed from above: none is preferred).
    Generated: ``n_generated`` photos from ``draw_photo(np.random.default_rng([seed, i]), kind)``
    (kinds by ``GENERATED_KIND_MIX``: 70% specimen, 15% empty, 15% edge), written as JPEG at
    ``jpeg_quality``; the last ``val_fraction`` of them for validation. Deterministic for a
    deterministic ``draw_photo``.
    ``leave_out_fold`` (i, k): leave out the real photos in part i of k (``evaluate.dev_fold``), so that a model
    trained without them predicts them out of fold (for fitting the fusion rule on photos the model never saw).
    """
    if real and not coco_path:
        raise ValueError("real=True needs coco_path (the real dev set's COCO file); real=False for generated only")
    if leave_out_fold and not real:
        raise ValueError("leave_out_fold leaves out real photos: it needs real=True")
    if int(n_generated) > 0 and draw_photo is None:
        raise ValueError("n_generated > 0 needs draw_photo")
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
        cocos = [Path(p) for p in (coco_path if isinstance(coco_path, (list, tuple)) else [coco_path])]
        if image_dir is not None and len(cocos) > 1:
            raise ValueError("image_dir applies to one COCO file; with several, each one's photos sit beside it")
        real_source = {
            "coco": [str(coco) for coco in cocos],
            "coco_sha256": [],
            "include_holdout": include_holdout,
            "real_repeat": int(real_repeat),
            "copy_k_turned_k_quarter_turns": True,
        }
        if leave_out_fold:  # only when given, so that a full model's manifest stays as it was
            real_source["left_out_fold"] = {"fold": int(leave_out_fold[0]), "folds": int(leave_out_fold[1])}
        for coco in cocos:
            if not coco.is_file():
                raise FileNotFoundError(f"{coco} is absent: pass the real dev set, or real=False (--no-real)")
            real_source["coco_sha256"].append(file_sha256(coco))
            images = Path(image_dir) if image_dir else coco.parent
            for truth in load_coco_ground_truth(coco):
                if dev_split(truth.processid) == "holdout" and not include_holdout:
                    continue
                if leave_out_fold and dev_fold(truth.processid, leave_out_fold[1]) == leave_out_fold[0]:
                    continue
                split = "val" if _real_val(truth.processid) else "train"
                src = images / truth.file_name
                with Image.open(src) as image:
                    # upright, as the boxes were drawn and the trainer reads copy 0 (its EXIF orientation)
                    turned_by_exif = image.getexif().get(ORIENTATION_TAG, 1) not in (None, 1)
                    upright = ImageOps.exif_transpose(image) if turned_by_exif else image
                    width, height = upright.size
                    needs_pixels = turned_by_exif or (split != "val" and int(real_repeat) >= 2)
                    pixels = np.asarray(upright.convert("RGB")) if needs_pixels else None
                stem = Path(truth.file_name).stem
                for copy in range(1 if split == "val" else max(1, int(real_repeat))):
                    name = stem if copy == 0 else f"{stem}.copy{copy}"
                    box, w, h = truth.box, width, height
                    if copy == 0 and not turned_by_exif:
                        shutil.copyfile(src, out / "images" / split / f"{name}.jpg")
                    elif copy == 0:
                        (out / "images" / split / f"{name}.jpg").write_bytes(encode_jpeg(pixels, 95))
                    else:
                        turned = np.ascontiguousarray(np.rot90(pixels, copy % 4))
                        for _ in range(copy % 4):
                            box = rotate_box_ccw(box, w) if box else None
                            w, h = h, w
                        (out / "images" / split / f"{name}.jpg").write_bytes(encode_jpeg(turned, 95))
                    try:
                        label = _yolo_label(box, w, h) if box else ""
                    except ValueError as error:
                        raise InputError(
                            f"{coco}: {truth.file_name}: {error} (is the photo the one annotated?)"
                        ) from None
                    (out / "labels" / split / f"{name}.txt").write_text(label)
                counts[f"{split}_real" + ("_empty" if truth.box is None else "")] += 1

    n_generated = int(n_generated)
    n_val = 0 if n_generated < 2 else max(1, int(round(n_generated * val_fraction)))
    kinds = list(GENERATED_KIND_MIX)
    kind_rng = np.random.default_rng([seed, 7919])
    drawn_kinds = kind_rng.choice(len(kinds), size=n_generated, p=list(GENERATED_KIND_MIX.values()))
    for i in range(n_generated):
        kind = kinds[int(drawn_kinds[i])]
        photo = draw_photo(np.random.default_rng([seed, i]), kind)
        split = "val" if i >= n_generated - n_val else "train"
        name = f"gen{seed}_{i:05d}_{kind}"
        (out / "images" / split / f"{name}.jpg").write_bytes(encode_jpeg(photo.image, jpeg_quality))
        height, width = photo.image.shape[:2]
        label = _yolo_label(photo.box, width, height) if photo.box else ""
        (out / "labels" / split / f"{name}.txt").write_text(label)
        counts[f"{split}_gen" + ("_empty" if photo.box is None else "")] += 1

    if not any(counts[k] for k in counts if k.startswith("val")):
        raise InputError("the dataset has no validation images (give more generated photos or real ones)")
    data_yaml = out / "data.yaml"
    data_yaml.write_text(
        f"# written by bioscan_rebuild.detect.yolo.dataset.prepare_yolo_dataset\n"
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
