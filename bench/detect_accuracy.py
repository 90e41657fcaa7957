"""Detector accuracy on the real hard cases (shared/realdata/imgfilter-dev, hand-drawn COCO truth).

    python bench/detect_accuracy.py [--backend classical|yolo|onnx] [--weights PATH] [--subset all|train|holdout|each]
                                    [--param KEY=VALUE ...] [--json OUT.json] [--sheet OUT.png]

Tune on 'train', report 'holdout' (see bioscan_rebuild.detect.evaluate.dev_split); `each` prints train, holdout and all.
Timing is per image, detection only (decode excluded), with OpenCV on one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bioscan_rebuild.detect.evaluate import dev_split, evaluate, load_coco_ground_truth, load_rgb, summarize  # noqa: E402
from bioscan_rebuild.detect.registry import BACKENDS, make_detector  # noqa: E402

DEFAULT_DEV = REPO.parent / "shared" / "realdata" / "imgfilter-dev"

COLUMNS = [
    ("specimens", "specimens", "{:d}"),
    ("empty_wells", "empty wells", "{:d}"),
    ("mean_iou", "mean IoU", "{:.3f}"),
    ("iou_ge_0.5", "IoU>=0.5", "{:.1%}"),
    ("iou_ge_0.75", "IoU>=0.75", "{:.1%}"),
    ("empty_recognised", "empty recognised", "{:.1%}"),
    ("specimens_missed", "specimens missed", "{:.1%}"),
    ("pixels_over_polygon_median", "pixels/polygon median", "{:.3f}"),
    ("pixels_vs_polygon_r", "pixels~polygon r", "{:.3f}"),
    ("ms_per_image", "ms/image", "{:.2f}"),
]


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def format_table(summaries: dict[str, dict]) -> str:
    names = list(summaries)
    width = max(len(label) for _, label, _ in COLUMNS)
    lines = [" " * width + "".join(f"{name:>10}" for name in names)]
    for key, label, fmt in COLUMNS:
        cells = []
        for name in names:
            value = summaries[name].get(key)
            cells.append(f"{'-' if value is None else fmt.format(value):>10}")
        lines.append(f"{label:<{width}}" + "".join(cells))
    return "\n".join(lines)


def is_failure(row: dict) -> bool:
    if row["empty_truth"]:
        return row["status"] != "no_object"
    return row["iou"] < 0.5


def contact_sheet(rows: list[dict], image_dir: Path, out: Path, cols: int = 6, tile: int = 256) -> int:
    """Failures side by side: truth box green, detection red; caption = file, status, IoU."""
    failures = [r for r in rows if is_failure(r)]
    tiles = []
    for row in failures:
        image = load_rgb(image_dir / row["file_name"]).copy()
        thick = max(2, image.shape[1] // 300)
        for box, colour in ((row["truth_box"], (0, 200, 0)), (row["box"], (230, 0, 0))):
            if box:
                cv2.rectangle(image, tuple(box[:2]), (box[2] - 1, box[3] - 1), colour, thick)
        h = tile * image.shape[0] // image.shape[1]
        small = cv2.resize(image, (tile, h), interpolation=cv2.INTER_AREA)
        caption = f"{row['file_name'].split('.')[0]} {row['status']} {row['iou']:.2f}"
        cv2.putText(small, caption, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 255), 1, cv2.LINE_AA)
        tiles.append(small)
    if not tiles:
        return 0
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (-len(tiles) % cols)
    grid = np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return len(failures)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="classical", choices=list(BACKENDS))
    ap.add_argument("--weights", help="model weights (yolo/onnx)")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="detector keyword (JSON value)")
    ap.add_argument("--subset", default="each", choices=["all", "train", "holdout", "each"])
    ap.add_argument("--dev-dir", type=Path, default=DEFAULT_DEV)
    ap.add_argument("--json", type=Path, help="write the summaries (and detector params) here")
    ap.add_argument("--sheet", type=Path, help="write a contact sheet of the failures (PNG)")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (timings: 1)")
    args = ap.parse_args(argv)

    cv2.setNumThreads(args.threads)
    coco = args.dev_dir / "coco_annotations.json"
    if not coco.exists():
        ap.error(f"{coco} not found (pass --dev-dir)")
    kwargs = {}
    for item in args.param:
        key, _, value = item.partition("=")
        kwargs[key] = _value(value)
    if args.weights:
        kwargs["weights"] = args.weights
    detector = make_detector(args.backend, **kwargs)

    truths = load_coco_ground_truth(coco)
    subsets = ["train", "holdout", "all"] if args.subset == "each" else [args.subset]
    # Evaluate each image once; the subsets are views on the same rows (timing: whole run).
    result = evaluate(detector, truths, args.dev_dir)
    by_name = {t.file_name: dev_split(t.processid) for t in truths}
    summaries, rows_by_subset = {}, {}
    for subset in subsets:
        chosen = [t for t in truths if subset == "all" or by_name[t.file_name] == subset]
        names = {t.file_name for t in chosen}
        rows = [r for r in result["rows"] if r["file_name"] in names]
        summaries[subset] = summarize(rows, result["summary"]["ms_per_image"])
        rows_by_subset[subset] = rows

    print(f"backend={args.backend} params={json.dumps(detector.params(), sort_keys=True)}")
    print(format_table(summaries))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"backend": args.backend, "params": detector.params(), "summaries": summaries}
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    if args.sheet:
        shown = rows_by_subset[subsets[-1]]
        n = contact_sheet(shown, args.dev_dir, args.sheet)
        print(f"contact sheet: {n} failures ({subsets[-1]}) -> {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
