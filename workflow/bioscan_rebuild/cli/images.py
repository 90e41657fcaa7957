"""Images and detection: `detect`, `images {photos,shard,summary}`, `review`, `train-detector`, `refit-fusion`,
`ship-detector`."""

from __future__ import annotations

import json
from pathlib import Path

from bioscan_rebuild.cli.common import (
    batch_dirs,
    bounded_int,
    distinct_outputs,
    file_outputs,
    json_option,
    non_negative_int,
)
from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.params import CONTACT_SHEET_SIZE
from bioscan_rebuild.detect.registry import BACKENDS


def _fold(text: str) -> tuple[int, int]:
    """``I/K`` -> (I, K), part I (0-based) of K >= 2."""
    import argparse

    try:
        fold, folds = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/K (e.g. 0/2)") from None
    if folds < 2 or not 0 <= fold < folds:
        raise argparse.ArgumentTypeError(f"{text!r}: need K >= 2 and 0 <= I < K")
    return fold, folds


def _detector_options(args) -> tuple[str, dict]:
    params = json_option(args.detector_params, "--detector-params") or {}
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
    p.add_argument("--backend", choices=tuple(BACKENDS), default="fusion", help="default: fusion (the config default)")
    p.add_argument("--weights", help="model file for the yolo (.pt), onnx or fusion (.onnx) backend")
    p.add_argument("--detector-params", help="backend parameters as a JSON object")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="one backend parameter (JSON value)")
    p.add_argument("--image-params", help="image-stage parameters as a JSON object (see config/README.md)")


def cmd_detect(args) -> int:
    # the table is a CSV (a photo's name there replaced the photo); crops in the photo folder would be photos next time
    if Path(args.output).suffix.lower() != ".csv":
        raise InputError(f"{args.output}: the detections are a CSV table: give the output a .csv name")
    distinct_outputs(outputs=[args.crop], folders=[args.image_dir])
    distinct_outputs(outputs=[args.output, args.crop])
    file_outputs(args.output)
    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.images.folder import detect_folder

    backend, params = _detector_options(args)
    counts = detect_folder(
        args.image_dir,
        args.output,
        backend=backend,
        detector_params=params,
        crop_dir=args.crop,
        image_params=ImageParams.from_dict(json_option(args.image_params, "--image-params"))
        if args.image_params
        else None,
    )
    print(json.dumps({"images": sum(counts.values()), "status": dict(sorted(counts.items()))}))
    return 0


def cmd_images_photos(args) -> int:
    distinct_outputs([args.inventory], [args.output, args.summary])
    file_outputs(args.output, args.summary)
    from bioscan_rebuild.core.io import write_json
    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.images.corrections import load_box_corrections
    from bioscan_rebuild.images.shard import run_photo_shard

    backend, params = _detector_options(args)
    summary = run_photo_shard(
        args.inventory,
        args.store,
        args.output,
        batch=args.batch,
        backend=backend,
        detector_params=params,
        image_params=ImageParams.from_dict(json_option(args.image_params, "--image-params"))
        if args.image_params
        else None,
        image_dirs=batch_dirs(args.image_dir),
        box_corrections=load_box_corrections(args.box_corrections),
    )
    if args.summary:
        write_json(summary, args.summary)
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_images_shard(args) -> int:
    from bioscan_rebuild.images.shard import run_image_shard

    summary = run_image_shard(
        args.records, args.photos, args.store, args.outdir, contact_sheet_size=args.contact_sheet_size
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_images_summary(args) -> int:
    from bioscan_rebuild.images.shard import summarize_shards

    if args.box_corrections and not args.corrections_out:  # the table was read by no one, exit 0
        raise InputError("images summary: --box-corrections is judged into --corrections-out: give both")
    inputs = [*args.summaries, *args.photo_summaries, *args.images, args.box_corrections, *args.record_rejects]
    distinct_outputs(inputs, [args.output, args.corrections_out])
    file_outputs(args.output, args.corrections_out)
    summary = summarize_shards(
        args.summaries,
        args.output,
        args.photo_summaries,
        image_tables=args.images,
        box_corrections=args.box_corrections,
        corrections_out=args.corrections_out,
        record_rejects=args.record_rejects,
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_review(args) -> int:
    from pathlib import Path

    from bioscan_rebuild.images.review import write_review

    if not Path(args.store).is_dir():  # a mistyped store gave a page of "photo not in the store", exit 0
        raise InputError(f"review: {args.store}: not a folder: give the image store the run used (results/store)")
    try:
        counts = write_review(args.images, args.store, args.outdir, args.limit)
    except ValueError as error:
        raise InputError(f"review: {error}") from error
    print(json.dumps(counts, sort_keys=True))
    return 0


def cmd_train_detector(args) -> int:
    from bioscan_rebuild.detect.yolo.train import prepare_and_train, read_fold_models
    from bioscan_rebuild.synth.photos import draw_well_photo

    if not args.dev_dir and not args.no_real:
        raise InputError("train-detector: --dev-dir is required unless --no-real")
    if args.out_of_fold:  # before the training, not after it
        if args.leave_out_fold:
            raise InputError("train-detector: an out-of-fold model (--leave-out-fold) takes no --out-of-fold models")
        try:
            read_fold_models(None, args.out_of_fold)
        except (FileNotFoundError, ValueError) as error:
            raise InputError(f"train-detector: {error}") from error
    summary = prepare_and_train(
        args.out,
        args.dev_dir,
        draw_photo=draw_well_photo,
        real=not args.no_real,
        prepare_only=args.prepare_only,
        generated=args.generated,
        seed=args.seed,
        include_holdout=args.include_holdout,
        real_repeat=args.real_repeat,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        model=args.model,
        device=args.device,
        workers=args.workers,
        score=not args.no_eval,
        verbose=args.verbose,
        classes_csv=args.classes,
        leave_out_fold=args.leave_out_fold,
        fold_dirs=args.out_of_fold,
    )
    print(json.dumps(summary, indent=2))
    return 0


def cmd_refit_fusion(args) -> int:
    from bioscan_rebuild.detect.yolo.train import refit_fusion

    try:
        summary = refit_fusion(args.trained, args.dev_dir, args.classes, args.out_of_fold, args.from_shipped)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"refit-fusion: {error}") from error
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def cmd_ship_detector(args) -> int:
    from bioscan_rebuild.detect.shipped import ship

    try:
        written = ship(args.trained, args.models_dir)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"ship-detector: {error}") from error
    print(json.dumps(written, indent=2, sort_keys=True))
    return 0


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
    p = images.add_parser("photos", help="process the photos of one image batch's shard (its inventory)")
    p.add_argument("inventory", help="the batch's inventory of the shard (parquet, from `ingest inventory`)")
    p.add_argument("--batch", required=True, help="the image batch's name")
    p.add_argument("--store", required=True, help="content-addressed store root")
    p.add_argument("-o", "--output", required=True, help="table of the processed photos (parquet)")
    p.add_argument("--summary", help="also write the counts (photos, processed, reused) to this JSON file")
    p.add_argument("--image-dir", action="append", default=[], metavar="BATCH=DIR", help="source folder (fallback)")
    p.add_argument(
        "--box-corrections",
        metavar="TSV",
        help="a maintainer's boxes (processid, box = x0,y0,x1,y1 or empty, reason, source), e.g. from `review`",
    )
    _add_detector_options(p)
    p.set_defaults(func=cmd_images_photos)

    p = images.add_parser("shard", help="join one shard of ingested records with their processed photos")
    p.add_argument("records", help="ingested records of the shard (parquet)")
    p.add_argument(
        "--photos", nargs="*", action="extend", default=[], help="the shard's photo tables of every image batch"
    )
    p.add_argument("--store", required=True, help="content-addressed store root")
    p.add_argument("--outdir", required=True)
    p.add_argument(
        "--contact-sheet-size",
        type=bounded_int(0, 2400),  # images.contact_sheet_size's limits in the config schema
        default=CONTACT_SHEET_SIZE,
        help="photos on the shard's contact sheet, flagged ones first (0: none)",
    )
    p.set_defaults(func=cmd_images_shard)

    p = images.add_parser("summary", help="status counts over all shards")
    p.add_argument("summaries", nargs="*", help="the shards' summary.json files")
    p.add_argument(
        "--photo-summaries",
        nargs="*",
        action="extend",
        default=[],
        help="the photo jobs' --summary files: add photos processed/reused",
    )
    p.add_argument(
        "--images", nargs="*", action="extend", default=[], help="the shards' image tables (for --corrections-out)"
    )
    p.add_argument("--box-corrections", metavar="TSV", help="the maintainer's box corrections the run applied")
    p.add_argument("--corrections-out", metavar="TSV", help="write each box correction with its outcome here")
    p.add_argument(
        "--record-rejects",
        nargs="*",
        action="extend",
        default=[],
        help="ingest's rejects.parquet (its shards' and exports'): a correction for a record whose photo ingest "
        "rejected is photo_unusable, for a record it refused record_rejected (not unknown_processid)",
    )
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_images_summary)

    p = sub.add_parser(
        "review",
        help="the review queue: review.html (flagged photos with their boxes, by reason) and box_corrections.tsv "
        "(a template to answer in; the next run applies it via images.box_corrections)",
    )
    p.add_argument("images", nargs="+", help="image tables of a run (results/images/*/images.parquet)")
    p.add_argument("--store", required=True, help="content-addressed store root (results/store)")
    p.add_argument("-o", "--outdir", required=True)
    p.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="show (and template) only the N least confident flagged photos: where a person's time finds most mistakes",
    )
    p.set_defaults(func=cmd_review)

    p = sub.add_parser(
        "train-detector",
        help="train the YOLO specimen detector offline (needs the yolo extra): "
        "prepare the dataset, train, export ONNX, score on the dev holdout half",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (the dataset goes to OUT/dataset)")
    p.add_argument("--prepare-only", action="store_true", help="write the YOLO dataset into OUT, do not train")
    p.add_argument("--generated", type=non_negative_int, default=200, help="generated photos (default 200)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument(
        "--dev-dir",
        type=Path,
        action="append",
        default=[],
        help="a real dev set (COCO: coco_annotations.json and its photos; repeat for several): its train half "
        "is trained on, its holdout half scored (unless --no-eval); required unless --no-real",
    )
    p.add_argument("--no-real", action="store_true", help="generated photos only")
    p.add_argument("--classes", help="image classes of the dev photos (folder,file_name,imgfilter_class CSV)")
    p.add_argument("--include-holdout", action="store_true", help="train on the holdout half too (no eval)")
    p.add_argument("--real-repeat", type=int, default=2, help="copies of each real training photo (default 2)")
    p.add_argument("--epochs", type=int, default=130)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--model", help="ultralytics model yaml, trained from scratch (default: yolo11n.yaml)")
    p.add_argument("--device", default=None, help="'cpu', '0', ... (default: GPU when present)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-eval", action="store_true", help="skip scoring on the dev holdout half")
    p.add_argument(
        "--leave-out-fold",
        type=_fold,
        metavar="I/K",
        help="leave out part I of K of the train half (an out-of-fold model, for refit-fusion --out-of-fold)",
    )
    p.add_argument(
        "--out-of-fold",
        type=Path,
        action="append",
        metavar="DIR",
        help="an out-of-fold model of the same recipe (a --leave-out-fold I/K folder), one per part I: the fusion "
        "rule is fitted on their detections of the photos each left out",
    )
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_train_detector)

    p = sub.add_parser(
        "refit-fusion",
        help="fit a train-detector folder's fusion rule again for the same model (after the classical detector "
        "changed) on the dev sets' train half; rewrites fusion.json, report.json and MODEL_CARD.md",
    )
    p.add_argument("trained", type=Path, help="the train-detector output folder (results/detector)")
    p.add_argument(
        "--dev-dir",
        type=Path,
        action="append",
        help="a real dev set (COCO), as for train-detector; repeat for several (default: the training's)",
    )
    p.add_argument(
        "--classes",
        help="image classes of the dev photos (folder,file_name,imgfilter_class CSV; default: the training's)",
    )
    p.add_argument(
        "--out-of-fold",
        type=Path,
        action="append",
        metavar="DIR",
        help="a train-detector --leave-out-fold I/K folder, one per part I: fit the rule on their detections of "
        "the photos each left out (photos the learned model never saw) instead of the model's own",
    )
    p.add_argument(
        "--from-shipped",
        action="store_true",
        help="first copy the package's model, rule, card and training report into TRAINED (a new or empty "
        "folder): fits the shipped model's rule again (after a classical detector change), to ship back",
    )
    p.set_defaults(func=cmd_refit_fusion)

    p = sub.add_parser(
        "ship-detector",
        help="copy a train-detector folder's model.onnx, fusion.json, MODEL_CARD.md and report.json into the package "
        "(detect/models/), refusing a rule or card that belongs to another model",
    )
    p.add_argument("trained", type=Path, help="the train-detector output folder (results/detector)")
    p.add_argument("--models-dir", type=Path, help="where to copy them (default: the package's detect/models/)")
    p.set_defaults(func=cmd_ship_detector)
