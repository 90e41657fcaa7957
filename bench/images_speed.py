"""Benchmark: the image stage's whole per-photo work vs JPEG decode alone, on one core.

For 1024x768 and 2880x2160 sources (generated well photos, plus the real 2880x2160 BIOSCAN
originals when ../shared is present) it times, on the same files in the same run:
- baselines: full JPEG decode of the source, nothing else, with Pillow and with simplejpeg (both libjpeg-turbo;
  simplejpeg is the decoder the stage uses, without Pillow's overhead: the stricter baseline);
- stage: decode (DCT-reduced where the source is larger than original_full), detection, crop,
  the four JPEG encodes and sha256 of each, exactly as the shard jobs do (store writes excluded).
Target: stage <= 2.5 x baseline. Then, for the real (else generated) 1024x768 set, where the time goes: each
step alone, and the time that leaves detection under the target.

    python bench/images_speed.py [--n 60] [--backend classical]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


def pin_one_core() -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import cv2

    cv2.setNumThreads(1)


def photos(n: int, size: tuple[int, int], seed: int) -> list[bytes]:
    import numpy as np
    from PIL import Image

    from bioscan_rebuild.synth.photos import draw_well_photo

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        photo = draw_well_photo(rng, kind="empty" if i % 10 == 0 else "specimen")
        image = Image.fromarray(photo.image)
        if image.size != size:
            image = image.resize(size, Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=92)
        out.append(buffer.getvalue())
    return out


def time_per_image(functions: dict, datas, repeats: int = 5) -> dict:
    """Seconds per image of each function: the best of ``repeats`` passes, the functions' passes interleaved
    so that a noisy stretch of a shared machine hits baseline and stage alike."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            for data in datas:
                function(data)
            best[name] = min(best[name], (time.perf_counter() - start) / len(datas))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=60, help="photos per source size")
    parser.add_argument("--backend", default="classical")
    parser.add_argument("--default-malloc", action="store_true", help="leave glibc's allocator settings alone")
    args = parser.parse_args()
    pin_one_core()
    import simplejpeg
    from PIL import Image

    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.detect.registry import make_detector
    from bioscan_rebuild.images.process import keep_freed_memory, process_photos

    # As the image-stage commands do; the decode-only baseline runs in this same process, so it gets it too.
    if not args.default_malloc:
        print("keep_freed_memory:", keep_freed_memory())

    detector = make_detector(args.backend)
    params = ImageParams()

    def decode_only(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.load()

    def decode_simplejpeg(data: bytes) -> None:
        # the decoder the stage itself uses (libjpeg-turbo without Pillow's overhead): the stricter baseline
        simplejpeg.decode_jpeg(data, colorspace="RGB")

    def stage(data: bytes) -> None:
        process_photos([data], detector, params)

    sets = {
        "1024x768 generated": photos(args.n, (1024, 768), 1),
        "2880x2160 generated": photos(max(10, args.n // 3), (2880, 2160), 2),
    }
    dev = ROOT.parent / "shared/realdata/imgfilter-dev"
    if dev.exists():
        sets["1024x768 real imgfilter-dev"] = [p.read_bytes() for p in sorted(dev.glob("*.jpg"))[: args.n]]
    real = ROOT.parent / "shared/realdata/BIOSCAN-1M/dataset/bioscan_images"
    if real.exists():
        sets["2880x2160 real BIOSCAN"] = [(real / n).read_bytes() for n in ("Diptera.jpg", "Hymenoptera.jpg")] * 5
    print(f"backend {args.backend}, one core (cv2 threads 1), best of 5 interleaved passes")
    print("decode: Pillow (PIL) and simplejpeg (SJ, the stage's own decoder); ratio = stage / decode")
    header = f"{'source':26} {'n':>4} {'PIL ms':>7} {'SJ ms':>7} {'stage ms':>9} {'/PIL':>6} {'/SJ':>6} {'img/s':>7}"
    print(header)
    for name, datas in sets.items():
        stage(datas[0])  # warm-up (imports, first-call costs)
        functions = {"decode": decode_only, "simplejpeg": decode_simplejpeg, "stage": stage}
        times = time_per_image(functions, datas)
        base, fast, full = times["decode"], times["simplejpeg"], times["stage"]
        print(
            f"{name:26} {len(datas):4d} {base * 1e3:7.2f} {fast * 1e3:7.2f} {full * 1e3:9.2f} "
            f"{full / base:6.2f} {full / fast:6.2f} {1 / full:7.1f}"
        )
    statuses = [r.status for r, _ in process_photos(sets["1024x768 generated"], detector, params)]
    print("statuses on the 1024x768 set:", {s: statuses.count(s) for s in sorted(set(statuses))})
    name = "1024x768 real imgfilter-dev" if "1024x768 real imgfilter-dev" in sets else "1024x768 generated"
    print_breakdown(name, sets[name], detector, params, decode_only, decode_simplejpeg)


def print_breakdown(name: str, datas: list[bytes], detector, params, decode_only, decode_simplejpeg) -> None:
    """Where a 1024x768 photo's stage time goes, each step timed alone on its own inputs (best of 5), and
    what that leaves detection under the 2.5 x decode target."""
    from bioscan_rebuild.images.process import decode_photo, finish_photo, halve

    decoded = [decode_photo(data, params) for data in datas]
    halves = [halve(d.rgb) for d in decoded]
    found = [detector.detect_batch([d.rgb], [h])[0] for d, h in zip(decoded, halves, strict=True)]
    steps = {  # step -> function of the photo's index
        "decode (Pillow, the baseline)": lambda i: decode_only(datas[i]),
        "decode (simplejpeg, the stricter baseline)": lambda i: decode_simplejpeg(datas[i]),
        "decode_photo (strict, header checks)": lambda i: decode_photo(datas[i], params),
        "halve (shared by detection and original_256)": lambda i: halve(decoded[i].rgb),
        "detect": lambda i: detector.detect_batch([decoded[i].rgb], [halves[i]]),
        "finish (crop, resizes, JPEG encodes, sha256)": lambda i: finish_photo(
            datas[i], decoded[i], found[i], params, None, halves[i]
        ),
    }
    best = time_per_image(steps, range(len(datas)))
    print(f"\nbreakdown, {name} ({len(datas)} photos), ms per photo:")
    for label, seconds in best.items():
        print(f"  {label:50} {seconds * 1e3:6.2f}")
    rest = sum(best[k] for k in list(steps)[2:]) - best["detect"]
    for label in list(steps)[:2]:
        base = best[label]
        decoder = label.split(",")[0][8:]
        print(f"  against {decoder}: everything but detection {rest * 1e3:.2f} ms = {rest / base:.2f} x decode;")
        print(f"    detection may take {(2.5 * base - rest) * 1e3:.2f} ms for the stage to stay within 2.5 x")


if __name__ == "__main__":
    main()
