"""Benchmark: YOLO detection and BIOSCAN cropping of JPEG photos entirely on one GPU.

Reads N JPEG files' bytes into memory (generated 1024x768 well photos written to a temp dir, or
the JPEGs of --images), then times three pipelines over all N, in batches:
- decode: ``torchvision.io.decode_jpeg(list, device="cuda")`` (nvJPEG);
- decode + detect: + letterbox on the GPU (bilinear resize, grey padding, minimal rectangle as
  ultralytics' predictor) and the YOLO model in half precision, then the top box per image and a
  count of separate candidates (batched; no per-image NMS loop);
- decode + detect + crop: + the BIOSCAN crop (box enlarged by 0.4 * max(w, h), rotated to
  landscape, grown to 4:3, padded with RGB 204,218,243, resized to 341x256) as one batched
  grid_sample;
and, where torchvision can encode on the GPU, + JPEG encoding of the crops.
Prints images/s per pipeline, batch size, device, versions (and writes them with --json).
Speed only: without --weights it builds an untrained yolo11n from its yaml (nothing is
downloaded). Target on one H100: >= 2000 images/s for decode + detect + crop.

Without a GPU it says so and runs a tiny N on the CPU, as a smoke test of the script.
It needs ultralytics, which a lent GPU machine lacks: run ``python bench/gpu_train.py pack`` here first and
install its ``.whl/`` wheels there (``pip install --no-index --no-deps --target /tmp/site .whl/*.whl`` with
``PYTHONPATH=/tmp/site``), as ``gpu_train.py``'s docstring shows.

    python bench/gpu_detect.py [--n 4096] [--batch 128] [--imgsz 640] [--weights W.pt] [--images DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

PAD_COLOR = (204, 218, 243)
CROP_W, CROP_H = 341, 256
ENLARGE = 0.4


def make_photos(folder: Path, n_unique: int, seed: int) -> list[Path]:
    import numpy as np

    from bioscan_rebuild.core.pilsafe import encode_jpeg
    from bioscan_rebuild.synth.photos import draw_well_photo

    kinds = ("specimen", "specimen", "specimen", "edge", "empty")
    paths = []
    for i in range(n_unique):
        photo = draw_well_photo(np.random.default_rng([seed, i]), kinds[i % len(kinds)])
        path = folder / f"photo{i:05d}.jpg"
        path.write_bytes(encode_jpeg(photo.image))
        paths.append(path)
    return paths


def letterbox_gpu(batch, imgsz: int, stride: int, dtype):
    """(B, 3, H, W) uint8 -> (B, 3, h, w) in [0, 1], ultralytics LetterBox(auto=True) geometry;
    returns the tensor and (gain_x, gain_y, pad_x, pad_y)."""
    import torch.nn.functional as F

    _, _, h, w = batch.shape
    r = min(imgsz / h, imgsz / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (imgsz - new_w) % stride / 2, (imgsz - new_h) % stride / 2
    top, bottom, left, right = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
    x = batch.to(dtype).div_(255)
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False)
    x = F.pad(x, (left, right, top, bottom), value=114 / 255)
    return x, (new_w / w, new_h / h, left, top)


def top_boxes(preds, geometry, width: int, height: int, conf: float):
    """Most confident box per image (image pixels, ints, exclusive ends; the whole image when no
    box clears conf) and the number of other boxes above conf that barely overlap it."""
    import torch

    gain_x, gain_y, pad_x, pad_y = geometry
    scores = preds[:, 4:].amax(1)  # (B, A)
    best = scores.argmax(1)
    top_score = scores.gather(1, best[:, None])[:, 0]
    xywh = preds[:, :4].float()  # (B, 4, A)
    xyxy = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    xyxy[:, [0, 2]] = ((xyxy[:, [0, 2]] - pad_x) / gain_x).clamp(0, width)
    xyxy[:, [1, 3]] = ((xyxy[:, [1, 3]] - pad_y) / gain_y).clamp(0, height)
    top = xyxy.gather(2, best[:, None, None].expand(-1, 4, 1))  # (B, 4, 1)
    ix = (torch.minimum(top[:, 2], xyxy[:, 2]) - torch.maximum(top[:, 0], xyxy[:, 0])).clamp(min=0)
    iy = (torch.minimum(top[:, 3], xyxy[:, 3]) - torch.maximum(top[:, 1], xyxy[:, 1])).clamp(min=0)
    areas = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    smaller = torch.minimum(areas, areas.gather(1, best[:, None])).clamp(min=1e-6)
    separate = ((scores > conf) & (ix * iy <= 0.3 * smaller)).sum(1)
    found = top_score > conf
    box = torch.floor(top[:, :, 0] + 0.5).long()
    full = torch.tensor([0, 0, width, height], device=box.device)
    box = torch.where(found[:, None], box, full)
    box[:, 2] = torch.maximum(box[:, 2], box[:, 0] + 1)
    box[:, 3] = torch.maximum(box[:, 3], box[:, 1] + 1)
    return box, top_score, found, separate


def crop_gpu(batch, box, pad_rgb):
    """BIOSCAN crop of each image (geometry.plan_crop + apply_crop + resize to 341x256), batched."""
    import torch
    import torch.nn.functional as F

    n, _, height, width = batch.shape
    x0, y0, x1, y1 = box.unbind(1)
    pad = torch.floor(ENLARGE * torch.maximum(x1 - x0, y1 - y0).double() / 2).long()
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    rotate = (y1 - y0) > (x1 - x0)
    # Rotating the image 90 degrees counter-clockwise maps box (x0, y0, x1, y1) to
    # (y0, W - x1, y1, W - x0).
    rx0 = torch.where(rotate, y0, x0)
    ry0 = torch.where(rotate, width - x1, y0)
    rx1 = torch.where(rotate, y1, x1)
    ry1 = torch.where(rotate, width - x0, y1)
    w, h = rx1 - rx0, ry1 - ry0
    k = torch.maximum(torch.maximum((w + 3) // 4, (h + 2) // 3), torch.ones_like(w))
    bx0 = rx0 - (4 * k - w) // 2
    by0 = ry0 - (3 * k - h) // 2
    dev = batch.device
    u = (torch.arange(CROP_W, device=dev, dtype=torch.float32) + 0.5) / CROP_W
    v = (torch.arange(CROP_H, device=dev, dtype=torch.float32) + 0.5) / CROP_H
    xr = bx0[:, None, None].float() + u[None, None, :] * (4 * k)[:, None, None].float()  # (n, 1, CROP_W)
    yr = by0[:, None, None].float() + v[None, :, None] * (3 * k)[:, None, None].float()  # (n, CROP_H, 1)
    xr, yr = xr.expand(n, CROP_H, CROP_W), yr.expand(n, CROP_H, CROP_W)
    rot = rotate[:, None, None]
    src_x = torch.where(rot, width - yr, xr)  # rotated (x, y) comes from original (W - y, x)
    src_y = torch.where(rot, xr, yr)
    grid = torch.stack([2 * src_x / width - 1, 2 * src_y / height - 1], -1)
    rgba = torch.cat([batch.float(), torch.full_like(batch[:, :1], 255, dtype=torch.float32)], 1)
    out = F.grid_sample(rgba, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha = out[:, 3:] / 255
    rgb = out[:, :3] + (1 - alpha) * pad_rgb.view(1, 3, 1, 1)
    return rgb.round_().clamp_(0, 255).to(torch.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4096, help="photos to process (default 4096)")
    parser.add_argument("--unique", type=int, default=256, help="distinct generated photos, cycled up to --n")
    parser.add_argument("--images", type=Path, help="folder of JPEGs to use instead of generated photos")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--weights", type=Path, help="YOLO weights.pt (default: untrained yolo11n.yaml, speed only)")
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from bioscan_rebuild.detect.yolo.offline import configure_offline

    configure_offline()
    import torch
    import torchvision
    import ultralytics
    from torchvision.io import ImageReadMode, decode_jpeg
    from ultralytics import YOLO

    cuda = torch.cuda.is_available()
    if cuda:
        device = torch.device("cuda")
        device_name = torch.cuda.get_device_name(0)
        torch.backends.cudnn.benchmark = True
    else:
        device, device_name = torch.device("cpu"), f"cpu ({platform.processor() or platform.machine()})"
        args.n, args.unique, args.batch = min(args.n, 8), min(args.unique, 8), min(args.batch, 4)
        print("no GPU (torch.cuda.is_available() is False): tiny CPU smoke run, figures are not meaningful")
    dtype = torch.float16 if cuda else torch.float32

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-detect-") as tmp:
        if args.images:
            paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
            if not paths:
                parser.error(f"no JPEGs in {args.images}")
        else:
            paths = make_photos(Path(tmp), min(args.unique, args.n), seed=0)
        blobs = [
            torch.frombuffer(bytearray(paths[i % len(paths)].read_bytes()), dtype=torch.uint8) for i in range(args.n)
        ]
    print(
        f"read {len(blobs)} JPEGs ({sum(b.numel() for b in blobs) / len(blobs) / 1024:.0f} KiB each) "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    yolo = YOLO(str(args.weights) if args.weights else "yolo11n.yaml", task="detect")
    net = yolo.model.fuse(verbose=False) if hasattr(yolo.model, "fuse") else yolo.model
    net = net.to(device).eval()
    net = net.half() if dtype == torch.float16 else net.float()
    stride = int(max(net.stride))
    pad_rgb = torch.tensor(PAD_COLOR, device=device, dtype=torch.float32)
    batches = [blobs[i : i + args.batch] for i in range(0, len(blobs), args.batch)]

    def decode(chunk):
        return decode_jpeg(chunk, mode=ImageReadMode.RGB, device=device)

    def run(stage: str, chunks: list) -> int:
        outputs = 0
        for chunk in chunks:
            images = decode(chunk)
            if stage == "decode":
                outputs += len(images)
                continue
            groups: dict[tuple, list[int]] = {}
            for i, im in enumerate(images):
                groups.setdefault(tuple(im.shape), []).append(i)
            for (_, height, width), idx in groups.items():
                batch = torch.stack([images[i] for i in idx])
                x, geometry = letterbox_gpu(batch, args.imgsz, stride, dtype)
                preds = net(x)
                preds = preds[0] if isinstance(preds, list | tuple) else preds
                box, _, found, _ = top_boxes(preds, geometry, width, height, args.conf)
                if stage == "detect":
                    outputs += found.numel()
                    continue
                crops = crop_gpu(batch, box, pad_rgb)
                if stage == "crop":
                    outputs += crops.shape[0]
                    continue
                encoded = torchvision.io.encode_jpeg(list(crops), quality=90)
                outputs += sum(int(e.cpu().numel() > 0) for e in encoded)
        if cuda:
            torch.cuda.synchronize()
        return outputs

    figures = {}
    stages = ["decode", "detect", "crop", "encode"]
    with torch.inference_mode():
        for stage in stages:
            try:
                run(stage, batches[:1])  # warm-up: cudnn autotuning, nvJPEG handles
                if cuda:
                    torch.cuda.synchronize()
                t = time.perf_counter()
                done = run(stage, batches)
                seconds = time.perf_counter() - t
            except Exception as error:  # e.g. encode_jpeg without GPU support in this build
                figures[stage] = {"error": f"{type(error).__name__}: {error}"}
                print(f"{stage}: skipped ({type(error).__name__}: {error})")
                continue
            figures[stage] = {"images": done, "seconds": round(seconds, 3), "images_per_s": round(done / seconds, 1)}

    labels = {
        "decode": "decode only",
        "detect": "decode + detect",
        "crop": "decode + detect + crop",
        "encode": "decode + detect + crop + JPEG encode",
    }
    report = {
        "device": device_name,
        "n": args.n,
        "batch": args.batch,
        "imgsz": args.imgsz,
        "precision": "fp16" if dtype == torch.float16 else "fp32",
        "weights": str(args.weights) if args.weights else "yolo11n.yaml (untrained)",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "ultralytics": ultralytics.__version__,
        "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "figures": figures,
    }
    print(
        f"device {device_name}; torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"ultralytics {ultralytics.__version__}; batch {args.batch}, imgsz {args.imgsz}, {report['precision']}"
    )
    for stage in stages:
        f = figures.get(stage, {})
        if "images_per_s" in f:
            print(f"  {labels[stage]:<40} {f['images_per_s']:>9.1f} images/s  ({f['images']} in {f['seconds']} s)")
    if cuda:
        crop = figures.get("crop", {}).get("images_per_s", 0)
        print(f"target >= 2000 images/s for decode + detect + crop: {'met' if crop >= 2000 else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
