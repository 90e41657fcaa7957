"""Images and detection: `bioscan-rebuild detect`, `images {shard,summary}`, `train-detector`."""

from __future__ import annotations

import argparse
import json

from bioscan_rebuild.cli.common import batch_dirs


def _detector_options(args) -> tuple[str, dict]:
    params = json.loads(args.detector_params) if args.detector_params else {}
    for item in args.param or []:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    if args.weights:
        params["weights"] = args.weights
    return args.backend, params


def _add_detector_options(p) -> None:
    p.add_argument("--backend", choices=("classical", "yolo", "onnx"), default="classical")
    p.add_argument("--weights", help="model file for the yolo (.pt) or onnx (.onnx) backend")
    p.add_argument("--detector-params", help="backend parameters as a JSON object")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="one backend parameter (JSON value)")
    p.add_argument("--image-params", help="image-stage parameters as a JSON object (see config/README.md)")


def cmd_detect(args) -> int:
    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.images.shard import detect_folder

    backend, params = _detector_options(args)
    counts = detect_folder(
        args.image_dir,
        args.output,
        backend=backend,
        detector_params=params,
        crop_dir=args.crop,
        image_params=ImageParams.from_dict(json.loads(args.image_params)) if args.image_params else None,
    )
    print(json.dumps({"images": sum(counts.values()), "status": dict(sorted(counts.items()))}))
    return 0


def cmd_images_shard(args) -> int:
    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.images.shard import run_image_shard

    backend, params = _detector_options(args)
    summary = run_image_shard(
        args.records,
        args.store,
        args.outdir,
        backend=backend,
        detector_params=params,
        batch_params=json.loads(args.batch_params) if args.batch_params else {},
        image_params=ImageParams.from_dict(json.loads(args.image_params)) if args.image_params else None,
        image_dirs=batch_dirs(args.image_dir),
        contact_sheet_size=args.contact_sheet_size,
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_images_summary(args) -> int:
    from bioscan_rebuild.images.shard import summarize_shards

    print(json.dumps(summarize_shards(args.summaries, args.output), sort_keys=True))
    return 0


def cmd_train_detector(args) -> int:
    from bioscan_rebuild.detect.yolo import main as yolo_main

    return yolo_main(["train", *args.options])


def register(sub) -> None:
    p = sub.add_parser("detect", help="detect (and with --crop, crop) the specimens of a folder of photos")
    p.add_argument("image_dir")
    p.add_argument("output", help="CSV: file_name, status, x0, y0, x1, y1, pixel_count, area_fraction, scale_factor")
    p.add_argument("--crop", metavar="DIR", help="also write the four image packages under DIR/{package}/")
    _add_detector_options(p)
    p.set_defaults(func=cmd_detect)

    images = sub.add_parser("images", help="image stage: detection, crops, packages, size fields").add_subparsers(
        dest="step", required=True
    )
    p = images.add_parser("shard", help="process the photos of one shard of ingested records")
    p.add_argument("records", help="ingested records of the shard (parquet)")
    p.add_argument("--store", required=True, help="content-addressed store root")
    p.add_argument("--outdir", required=True)
    p.add_argument("--image-dir", action="append", default=[], metavar="BATCH=DIR", help="source folders (fallback)")
    p.add_argument("--batch-params", help="per-batch detector parameter overrides, JSON {batch: {...}}")
    p.add_argument("--contact-sheet-size", type=int, default=120)
    _add_detector_options(p)
    p.set_defaults(func=cmd_images_shard)

    p = images.add_parser("summary", help="status counts over all shards")
    p.add_argument("summaries", nargs="*")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_images_summary)

    p = sub.add_parser(
        "train-detector",
        help="train the YOLO specimen detector offline (needs the yolo extra); "
        "options: python -m bioscan_rebuild.detect.yolo train --help",
    )
    p.add_argument("options", nargs=argparse.REMAINDER, help="passed to detect_yolo train")
    p.set_defaults(func=cmd_train_detector)
