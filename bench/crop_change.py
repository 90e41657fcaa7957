"""Benchmark: a change to the crop or JPEG settings redoes the crops, not the detection.

Real photos (the hand-boxed hard cases in ``../shared/realdata/imgfilter-dev``, 1024x768 BIOSCAN photos) go
through one photo job (``run_photo_shard``) with the default detector (fusion: classical + the shipped ONNX model
with test-time augmentation), then again with ``jpeg_quality`` and ``enlarge`` changed. Printed, in the same run:
the first job (detect + crop), the changed job on the same store (crops only: detections from the store), and the
changed job on a fresh store (what that change cost before detections were stored apart). One process, one core.

    python bench/crop_change.py [--photos 120] [--backend fusion] [--workdir /tmp/bench-crop-change]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--backend", default="fusion")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-crop-change"))
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "realdata" / "imgfilter-dev")
    args = parser.parse_args()

    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.images.shard import run_photo_shard
    from bioscan_rebuild.ingest.local import ingest_local

    shutil.rmtree(args.workdir, ignore_errors=True)
    photos = args.workdir / "photos"
    photos.mkdir(parents=True)
    chosen = sorted(args.source.glob("*.jpg"))[: args.photos]
    if not chosen:
        parser.error(f"no .jpg photos in {args.source}: give a folder of photos with --source")
    for path in chosen:
        os.link(path, photos / path.name)
    processids = [path.name.split(".")[0] for path in chosen]
    header = ["processid", "sampleid", "bin_uri", "coord", "marker_code", "nucraw", "province", "country"]
    header += ["phylum", "class", "order", "family", "subfamily", "genus", "species"]
    export = args.workdir / "export.tsv"
    rows = ["\t".join([pid] + ["None"] * (len(header) - 1)) for pid in processids]
    export.write_text("\n".join(["\t".join(header), *rows]) + "\n")
    ingest_local([export], [photos], args.workdir / "ingest", shards=1, store=None)
    inventory = args.workdir / "ingest" / "images" / "images-1" / "inventory" / "shard-000.parquet"
    dirs = {"images-1": str(photos)}
    changed = ImageParams(jpeg_quality=85, enlarge=0.5)

    def job(store: str, name: str, params: ImageParams) -> tuple[float, dict]:
        start = time.perf_counter()
        counts = run_photo_shard(
            inventory,
            args.workdir / store,
            args.workdir / f"{name}.parquet",
            batch="images-1",
            backend=args.backend,
            image_dirs=dirs,
            image_params=params,
        )
        return time.perf_counter() - start, counts

    first, counts = job("store", "first", ImageParams())
    reused, _ = job("store", "changed", changed)
    fresh, _ = job("fresh", "fresh", changed)
    n = counts["photos"]
    print(f"{n} real photos, backend {args.backend}, one process")
    print(f"first job (detect + crops):                    {first:7.2f} s  {1000 * first / n:6.1f} ms/photo")
    print(f"crop settings changed, detections stored:      {reused:7.2f} s  {1000 * reused / n:6.1f} ms/photo")
    print(f"crop settings changed, fresh store (before):   {fresh:7.2f} s  {1000 * fresh / n:6.1f} ms/photo")
    print(f"saved by the stored detections: {100 * (1 - reused / fresh):.0f} % of the changed job")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
