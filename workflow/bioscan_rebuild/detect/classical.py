"""Classical specimen detector: OpenCV on the CPU, no weights (the default backend).

How it works (all on one image, deterministic, vectorised numpy/cv2):

0. A photo of another size than the reference (``reference_area``, 1024x768 pixels) is resampled to it, its aspect
   kept, and the result resampled back at the end: every size below is in pixels of the reference.
1. Reduce the photo by ``scale`` (1/4: 1024x768 -> 256x192, INTER_AREA in 2x steps) and convert to LAB.
2. Background: a grey closing (``bg_kernel``) of L gives the bright envelope; pixels within ``bg_band`` of it
   are "background"; their LAB colour, smoothed by a normalised Gaussian at 1/16 scale (``bg_sigma``), is the
   background surface. Dark specimens wider than the kernel still get the surrounding surface.
3. Score = darkness below the background + ``chroma_weight`` x colour distance from it; where a pixel is
   brighter than the background (specular glare) only ``highlight_weight`` x the colour distance counts.
4. Noise = 1.4826 x MAD of the score. ``lo`` = max(``lo_min``, median + ``k_lo`` x noise) (hysteresis low);
   the bar = max(``bar``, median + ``k_bar`` x noise). Strength = score smoothed by ``strength_sigma``, so a
   candidate needs a *thick* dark/coloured core: hairs, fibres, dust and well-rim lines stay below the bar.
5. Cores (strength >= ``core_frac`` x bar) closer than ``merge_px`` are merged (detached legs, wings); a
   merged group whose peak strength clears the bar (and has ``min_area`` pixels) is a candidate.
   With ``mask_well`` the cores outside the estimated plate well are dropped first.
6. No candidate: look for one soft out-of-focus specimen (a specimen on the well wall): a compact
   (``blob_max_elongation``), warm-coloured (``blob_min_warmth``, b* above the background), blurry
   (``blob_max_sharpness``) blob whose score smoothed by ``blob_sigma`` reaches ``blob_bar``. Still nothing:
   ``no_object``.
7. The chosen candidate -- the one with the largest strength sum over its core pixels (``select_mass``; else
   the highest peak) -- grows by hysteresis (score > ``grow_lo_factor`` x lo) at the reduced scale
   within ``reach`` x its size (legs, antennae, pale wings, but not a long fibre it touches); then the mask is
   refined at the input resolution inside that box + ``refine_pad`` only: pixels with score >
   max(``full_lo_factor`` x lo, rel x peak) connected to the core, where rel = ``blur_rel`` for an
   out-of-focus object (edge sharpness < ``blur_sharpness``; trims the blur halo) else ``rel_thresh``.

Speed (one core, 1024x768): everything at the reduced scale uses cv2 primitives on uint8/float32 planes (no
float64, no large numpy reductions); the background's 4x4 block means come from integral images, the noise
statistics (median, MAD) from a histogram (1/32-unit bins), and the refinement converts only the crop to LAB
and upscales the background over it with cv2.resize of a window (not warpAffine: ~10x faster, same sampling).
``classical-2`` gives the same results as ``classical-1`` up to float rounding and the histogram medians;
``classical-3`` differs only in the choice among several candidates (``select_mass``); ``classical-4`` only for
photos of another size than the reference (step 0).

Result: ``ok`` with the tight box of that mask (x1/y1 exclusive, input pixels), ``mask`` (bool, input
resolution), ``pixel_count`` = mask.sum() and ``score`` = peak strength; ``multiple_candidates`` when two or more
separate groups clear the bar -- the box, mask and count are then those of the chosen one (not the union:
the runner-up is usually a detached part or debris, and a union box would swallow the gap);
``candidates`` = the number of groups that cleared the bar; ``no_object`` (box None) otherwise.
"""

from __future__ import annotations

import cv2
import numpy as np

from bioscan_rebuild.detect.base import Detection, ParameterError, as_rgb8, typed_parameter

VERSION = "classical-4"

# Defaults; every one is a keyword of ClassicalDetector and part of params(). Score units are CIELAB
# (OpenCV 8-bit scale: L 0..255) at the reduced scale; pixel sizes are at the reduced scale unless noted.
DEFAULTS: dict = {
    # a photo of another size is first resampled to about this many pixels (its aspect kept): every size below is
    # in pixels of a 1024x768 photo (0: detect at the photo's own size)
    "reference_area": 786_432,  # 1024 x 768
    "scale": 4,  # detection runs on the (resampled) image reduced by this factor
    "bg_kernel": 15,  # closing size for the bright envelope (px, reduced scale; 60 px at 1024x768)
    "bg_band": 6.0,  # pixels within this many L units of the envelope define the background colour
    "bg_sigma": 2.0,  # smoothing of the background surface (px at 1/4 of the reduced scale)
    "chroma_weight": 1.0,  # weight of the colour distance (a*, b*) against darkness
    "highlight_weight": 0.5,  # factor on the colour term where a pixel is brighter than the background
    "k_lo": 4.0,  # hysteresis low threshold, noise units above the median score
    "lo_min": 6.0,  # ... and at least this many score units
    "bar": 75.0,  # a candidate's peak strength must reach this (score units) ...
    "k_bar": 10.0,  # ... and this many noise units above the median
    "strength_sigma": 1.0,  # Gaussian smoothing of the score for the strength (rejects thin lines)
    "core_frac": 0.5,  # core pixels: strength >= core_frac x bar
    "merge_px": 2,  # cores closer than this are one object
    "min_area": 4,  # core pixels a candidate needs
    "select_mass": True,  # pick the candidate with the largest core strength sum (False: the highest peak)
    "mask_well": False,  # drop candidates outside the estimated plate well (not for plain backgrounds)
    "well_level": 0.88,  # well = background L >= well_level x its 95th percentile (region around the centre)
    "well_margin": 4,  # erode the well by this many px
    "reach": 1.5,  # appendages may reach this many core sizes beyond the core
    "grow_lo_factor": 1.0,  # growth threshold at the reduced scale, x lo
    "refine_pad": 12,  # px at input resolution around the grown region for the full-resolution refinement
    "full_lo_factor": 1.5,  # full-resolution threshold, x lo (full resolution is noisier)
    "rel_thresh": 0.0,  # full-resolution threshold as a fraction of the peak, sharp objects
    "blur_sharpness": 0.22,  # edge sharpness (1/edge width, px^-1 at reduced scale) below this = out of focus
    "blur_rel": 0.3,  # full-resolution threshold as a fraction of the peak, out-of-focus objects
    "blob_bar": 40.0,  # soft-blob fallback: smoothed score needed (<= 0 disables the fallback)
    "blob_sigma": 2.0,  # smoothing for the blob score
    "blob_min_warmth": 0.5,  # mean b* above the background (insects are brown/yellow; rim bands are grey/blue)
    "blob_max_elongation": 4.5,  # major/minor axis ratio (rim arcs are long)
    "blob_max_sharpness": 0.3,  # the blob must be blurry
}


def _odd(n: float) -> int:
    n = max(1, int(round(n)))
    return n if n % 2 else n + 1


class ClassicalDetector:
    name = "classical"

    def __init__(self, **params):
        """Keyword arguments override ``DEFAULTS`` (see there for each one's meaning)."""
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ParameterError(f"unknown ClassicalDetector parameters: {sorted(unknown)}")
        merged = {**DEFAULTS, **params}
        self._p = {k: typed_parameter("ClassicalDetector", k, v, DEFAULTS[k]) for k, v in merged.items()}
        if self._p["scale"] < 1:
            raise ValueError("scale must be >= 1")

    def params(self) -> dict:
        """Everything that changes the output, plus the algorithm version (JSON-serialisable)."""
        return {"version": VERSION, **self._p}

    # ------------------------------------------------------------------ score
    def _reduce(self, image: np.ndarray, half: np.ndarray | None = None) -> np.ndarray:
        h, w = image.shape[:2]
        f = self._p["scale"]
        small = image
        if half is not None and f % 2 == 0 and half.shape[:2] == (h // 2, w // 2):
            small, f = half, f // 2  # the caller's 2x2 box-filtered copy: the same first step, done once
        while f >= 2 and f % 2 == 0:
            small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA)
            f //= 2
        if f > 1:
            small = cv2.resize(small, (w // self._p["scale"], h // self._p["scale"]), interpolation=cv2.INTER_AREA)
        return small

    def _background(self, planes: list[np.ndarray]) -> list[np.ndarray]:
        """Coarse (1/4 of the detection scale) LAB background surface: 3 float32 planes (h/4, w/4).
        ``planes``: the uint8 L, a*, b* planes at the detection scale."""
        p = self._p
        L = planes[0]
        k = _odd(p["bg_kernel"])
        env = cv2.morphologyEx(L, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
        # L >= env - band  <=>  L + floor(band) >= env  (integers)
        band = int(np.floor(p["bg_band"]))
        if band >= 0:
            wmask = cv2.compare(cv2.add(L, band), env, cv2.CMP_GE)
        else:
            wmask = cv2.compare(L, cv2.add(env, -band), cv2.CMP_GE)
        h, wd = L.shape
        ch, cw = max(1, h // 4), max(1, wd // 4)
        # masked LAB and background-pixel share averaged over 4x4 blocks, exactly, from integral images
        sums = []
        for plane in (*(cv2.bitwise_and(c, wmask) for c in planes), wmask):
            if h >= 4 and wd >= 4:
                J = cv2.integral(plane)[: 4 * ch + 1 : 4, : 4 * cw + 1 : 4]
                sums.append((J[1:, 1:] - J[:-1, 1:] - J[1:, :-1] + J[:-1, :-1]).astype(np.float32))
            else:
                sums.append(cv2.resize(plane.astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA) * 16)
        both = cv2.GaussianBlur(cv2.merge(sums), (0, 0), p["bg_sigma"])
        num = cv2.split(both)
        # mask plane is 0/255: the denominator floor 1e-4 (share of background pixels) x 16 x 255
        den = 255.0 / np.maximum(num[3], 1e-4 * 16 * 255)
        return [cv2.multiply(c, den) for c in num[:3]]

    def _score(self, planes: list[np.ndarray], bg: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Score (float32, HxW) and b* below the background (bg_b - b, for the blob warmth test).
        ``planes``: uint8 L, a*, b* planes; ``bg``: their background, 3 float32 planes of the same size."""
        p = self._p
        L, A, B = planes
        f32 = cv2.CV_32F
        dark = cv2.subtract(bg[0], L, dtype=f32)
        db = cv2.subtract(bg[2], B, dtype=f32)
        s = cv2.magnitude(cv2.subtract(bg[1], A, dtype=f32), db)
        hw = p["highlight_weight"]
        # colour term x (1 where dark >= 0, else highlight_weight) + max(dark, 0)
        if hw != 1.0:
            # the threshold is strict (dark > t): t just below 0 counts exactly 0 as "not brighter" (a float32
            # background minus an 8-bit value is 0 or at least ~1e-5 away from it)
            fac = cv2.threshold(dark, -1e-30, 1.0 - hw, cv2.THRESH_BINARY)[1]
            if hw:
                fac = cv2.add(fac, hw)
            s = cv2.multiply(s, fac, scale=p["chroma_weight"])
        elif p["chroma_weight"] != 1.0:
            s = cv2.multiply(s, p["chroma_weight"])
        return cv2.add(s, cv2.max(dark, 0.0)), db

    _NB, _RANGE = 2048, 64.0

    @classmethod
    def _median(cls, x: np.ndarray) -> float:
        """Median of a float32 array >= 0 (np.median up to 1/64 unit), from a histogram."""
        n = x.size
        hist = cv2.calcHist([x], [0], None, [cls._NB], [0, cls._RANGE]).ravel()
        cum = np.cumsum(hist)
        k = 0.5 * (n - 1)  # 0-based rank of the median
        if cum[-1] <= k + 1:
            part = np.partition(x.ravel(), [n // 2 - (1 - n % 2), n // 2])
            return 0.5 * (float(part[n // 2 - (1 - n % 2)]) + float(part[n // 2]))
        b = int(np.searchsorted(cum, k, side="right"))
        before = float(cum[b - 1]) if b else 0.0
        return (b + (k - before + 0.5) / float(hist[b])) * (cls._RANGE / cls._NB)

    # ------------------------------------------------------------------ detect
    def detect_batch(self, images: list[np.ndarray], halves: list[np.ndarray] | None = None) -> list[Detection]:
        return [self.detect(image, half) for image, half in zip(images, halves or [None] * len(images))]

    # a photo whose resampling factor (by area) is within 5 % of 1 is taken as it is (a factor so close changes
    # little but the rounding)
    _AS_IT_IS = 0.05

    def _resampling(self, shape: tuple[int, ...]) -> float:
        """The factor a photo of ``shape`` is resampled by (1.0: none): the one that gives it
        ``reference_area`` pixels, so that a 512x384 photo, a portrait 576x768 one or a 2048x1536 one is
        detected at the working resolution every pixel size was tuned for (at its own size, a 512x384 photo's
        specimens were half as many reduced pixels: the classical detector boxed 50 % of the held-out specimens
        where it boxes 70 % at 1024x768, and its pixel counts ran 14 % low)."""
        area = self._p["reference_area"]
        height, width = shape[:2]
        if area <= 0 or not height or not width:
            return 1.0
        factor = (area / (height * width)) ** 0.5
        return 1.0 if abs(factor - 1.0) <= self._AS_IT_IS else factor

    @staticmethod
    def _resampled(image: np.ndarray, factor: float) -> np.ndarray:
        height, width = image.shape[:2]
        size = (max(1, int(round(width * factor))), max(1, int(round(height * factor))))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)

    @staticmethod
    def _back(found: Detection, shape: tuple[int, ...]) -> Detection:
        """``found`` on the resampled photo, on the photo of ``shape``: its mask resampled back (nearest), the box
        the tight box of that mask, the pixel count the mask's."""
        if found.box is None or found.mask is None:
            return found
        height, width = shape[:2]
        mask = cv2.resize(found.mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not rows.size:  # a sliver lost to the resampling: the box resampled back
            fy, fx = found.mask.shape[0] / height, found.mask.shape[1] / width
            x0, y0, x1, y1 = found.box
            x0, x1 = min(width - 1, int(x0 / fx)), min(width, max(int(x0 / fx) + 1, int(np.ceil(x1 / fx))))
            y0, y1 = min(height - 1, int(y0 / fy)), min(height, max(int(y0 / fy) + 1, int(np.ceil(y1 / fy))))
            mask[y0:y1, x0:x1] = True
            rows, cols = np.arange(y0, y1), np.arange(x0, x1)
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        return Detection(found.status, box, int(mask.sum()), found.score, found.candidates, mask)

    def _analyse(self, image: np.ndarray, half: np.ndarray | None = None) -> dict:
        p = self._p
        small = self._reduce(image, half)
        lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)
        planes = cv2.split(lab)
        bgc = self._background(planes)
        size = (small.shape[1], small.shape[0])
        bg = [cv2.resize(c, size, interpolation=cv2.INTER_LINEAR) for c in bgc]
        s, db = self._score(planes, bg)
        sub = np.ascontiguousarray(s[::2, ::2])
        med = self._median(sub)
        # OpenCV reads an array of up to 4 elements in one column as a scalar: numpy for such a sliver of a photo
        deviation = cv2.absdiff(sub, med) if sub.shape[1] > 1 else np.abs(sub - np.float32(med))
        noise = 1.4826 * self._median(deviation) + 1e-3
        lo = max(p["lo_min"], med + p["k_lo"] * noise)
        bar = max(p["bar"], med + p["k_bar"] * noise)
        strength = cv2.GaussianBlur(s, (0, 0), p["strength_sigma"]) if p["strength_sigma"] > 0 else s
        core = cv2.compare(strength, bar * p["core_frac"], cv2.CMP_GE)  # 0/255
        if p["mask_well"]:
            core = cv2.bitwise_and(core, self._well(bgc, core.shape) * np.uint8(255))
        a = {"s": s, "db": db, "strength": strength, "lo": lo, "bar": bar, "core": core, "bg": bg}
        # candidates: groups of merged cores that hold a pixel at or above the bar (only those can pass)
        hi = cv2.compare(strength, bar, cv2.CMP_GE)
        if p["mask_well"]:
            hi = cv2.bitwise_and(hi, core)
        if not cv2.countNonZero(hi):
            a["cands"] = np.zeros(0, np.int64)
            return a
        k = 2 * p["merge_px"] + 1
        merged = cv2.dilate(core, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) if p["merge_px"] else core
        n, glab = cv2.connectedComponents(merged, connectivity=8, ltype=cv2.CV_32S)
        gmax = np.zeros(n, np.float32)
        hi = hi > 0
        np.maximum.at(gmax, glab[hi], strength[hi])
        cands = np.flatnonzero(gmax >= bar)
        cands = cands[cands > 0]
        if cands.size:
            garea = np.bincount(glab[core > 0], minlength=n)
            cands = cands[garea[cands] >= p["min_area"]]
        a.update(glab=glab, gmax=gmax, cands=cands)
        return a

    def _well(self, bgc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """uint8 mask (reduced scale) of the plate well: the bright background region around the image
        centre (the plastic outside the well and the rim shadow are darker), convex, eroded by well_margin."""
        p = self._p
        lum = bgc[0]
        bright = (lum >= p["well_level"] * float(np.percentile(lum, 95))).astype(np.uint8)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
        h, w = lum.shape
        centre = lab[h // 2, w // 2]
        pick = centre if centre > 0 else (1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if n > 1 else 0)
        well = np.zeros(shape, np.uint8)
        if pick == 0:
            well[:] = 1
            return well
        pts = cv2.findNonZero((lab == pick).astype(np.uint8))
        hull = cv2.convexHull(pts).astype(np.float32)
        hull = (hull + 0.5) * np.array([shape[1] / w, shape[0] / h], np.float32) - 0.5
        cv2.fillConvexPoly(well, np.round(hull).astype(np.int32), 1)
        if p["well_margin"] > 0:
            k = 2 * p["well_margin"] + 1
            well = cv2.erode(well, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)), borderValue=1)
        return well

    def detect(self, image: np.ndarray, half: np.ndarray | None = None) -> Detection:
        """``half``: optionally, the image already reduced 2x with INTER_AREA (saves that step; not used for a
        photo resampled to ``reference_area``)."""
        image = as_rgb8(image)
        factor = self._resampling(image.shape)
        if factor != 1.0:
            return self._back(self._detect(self._resampled(image, factor), None), image.shape)
        return self._detect(image, half)

    def _detect(self, image: np.ndarray, half: np.ndarray | None) -> Detection:
        if min(image.shape[:2]) < 2 * self._p["scale"]:  # its background surface would be empty (OpenCV raises)
            return Detection("no_object", None, None, 0.0, 0, None)
        a = self._analyse(image, half)
        cands = a["cands"]
        if cands.size:
            best = self._best(a, cands)
            gmask = cv2.bitwise_and(cv2.compare(a["glab"], best, cv2.CMP_EQ), a["core"])
            a["peak"] = float(a["gmax"][best])
            a["sharpness"] = self._sharpness(a["s"], gmask, a["peak"])
            n_cands = int(cands.size)
        else:
            blob = self._blob(a)
            if blob is None:
                return Detection("no_object", None, None, 0.0, 0, None)
            gmask, a["peak"], a["sharpness"] = blob
            n_cands = 1
        mask, box, count = self._refine(image, a, gmask)
        status = "ok" if n_cands == 1 else "multiple_candidates"
        return Detection(status, box, count, a["peak"], n_cands, mask)

    def _best(self, a: dict, cands: np.ndarray) -> int:
        """The candidate to report: largest strength sum over its core pixels (``select_mass``; a whole
        specimen beats a small dark fragment, a detached wing or a speck) or highest peak strength."""
        if not self._p["select_mass"] or cands.size == 1:
            return int(cands[np.argmax(a["gmax"][cands])])
        core = a["core"] > 0
        mass = np.bincount(a["glab"][core], weights=a["strength"][core], minlength=a["gmax"].size)
        return int(cands[np.argmax(mass[cands])])

    def segment_in_box(self, image: np.ndarray, box, margin: float = 0.1) -> np.ndarray:
        """Bool mask (input resolution) of the organism inside/around ``box`` (x0, y0, x1, y1, exclusive ends),
        e.g. a box from another backend: the strongest pixels inside the box seed the same growth and
        full-resolution refinement as ``detect``; the result stays within the box enlarged by ``margin`` x its
        size (+ 4 px). All False when nothing in the box stands out from the background."""
        image = as_rgb8(image)
        factor = self._resampling(image.shape)
        if factor != 1.0:
            found = self.segment_in_box(self._resampled(image, factor), [v * factor for v in box], margin)
            height, width = image.shape[:2]
            back = cv2.resize(found.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
            # within the box enlarged by margin x its size + 4 px at this photo's own resolution, as promised
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            e = margin * max(x1 - x0, y1 - y0) + 4
            kept = np.zeros_like(back)
            ex0, ey0 = max(0, int(x0 - e)), max(0, int(y0 - e))
            kept[
                ey0 : max(ey0, min(height, int(np.ceil(y1 + e)))), ex0 : max(ex0, min(width, int(np.ceil(x1 + e))))
            ] = True
            return back & kept
        H, W = image.shape[:2]
        out = np.zeros((H, W), bool)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        if x1 <= x0 or y1 <= y0:
            return out
        a = self._analyse(image)
        sc = self._p["scale"]
        h, w = a["s"].shape
        sx0, sy0 = min(w - 1, x0 // sc), min(h - 1, y0 // sc)
        sx1, sy1 = max(sx0 + 1, min(w, -(-x1 // sc))), max(sy0 + 1, min(h, -(-y1 // sc)))
        gmask = np.zeros((h, w), np.uint8)
        gmask[sy0:sy1, sx0:sx1] = a["core"][sy0:sy1, sx0:sx1]
        if not gmask[sy0:sy1, sx0:sx1].any():
            gmask[sy0:sy1, sx0:sx1] = a["s"][sy0:sy1, sx0:sx1] > a["lo"]
        inner = gmask[sy0:sy1, sx0:sx1]
        if not inner.any():
            return out
        a["peak"] = float(a["strength"][sy0:sy1, sx0:sx1][inner > 0].max())
        a["sharpness"] = self._sharpness(a["s"], gmask, a["peak"])
        mask, _, _ = self._refine(image, a, gmask)
        e = margin * max(x1 - x0, y1 - y0) + 4
        ex0, ey0 = max(0, int(x0 - e)), max(0, int(y0 - e))
        ex1, ey1 = min(W, int(np.ceil(x1 + e))), min(H, int(np.ceil(y1 + e)))
        out[ey0:ey1, ex0:ex1] = mask[ey0:ey1, ex0:ex1]
        return out

    def _blob(self, a: dict):
        """Out-of-focus specimens (on the well wall): soft, compact, warm-coloured blobs below the sharp bar.
        Returns (uint8 group mask, peak strength, sharpness) or None."""
        p = self._p
        if p["blob_bar"] <= 0:
            return None
        s = a["s"]
        st = cv2.GaussianBlur(s, (0, 0), p["blob_sigma"])
        m = cv2.compare(st, p["blob_bar"], cv2.CMP_GE)
        if not cv2.countNonZero(m):
            return None
        n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8, ltype=cv2.CV_32S)
        best, best_peak = None, 0.0
        db = a["db"]
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] < p["min_area"]:
                continue
            x, y, w, h = (int(v) for v in stats[i, :4])
            cm = lab[y : y + h, x : x + w] == i
            peak = float(st[y : y + h, x : x + w][cm].max())
            if peak <= best_peak:
                continue
            warm = -float(db[y : y + h, x : x + w][cm].mean())
            if warm < p["blob_min_warmth"]:
                continue
            ys, xs = np.nonzero(cm)
            if xs.size > 2:
                ev = np.linalg.eigvalsh(np.cov(np.vstack([xs, ys]).astype(np.float64)))
                if ev[1] > p["blob_max_elongation"] ** 2 * max(ev[0], 1e-3):
                    continue
            full = np.zeros(s.shape, np.uint8)
            full[y : y + h, x : x + w] = cm
            sharp = self._sharpness(s, full, float(s[y : y + h, x : x + w][cm].max()))
            if sharp >= p["blob_max_sharpness"]:
                continue
            best, best_peak = (full, float(a["strength"][y : y + h, x : x + w][cm].max()), sharp), peak
        return best

    _NEAR = np.ones((5, 5), np.uint8)

    @classmethod
    def _sharpness(cls, s: np.ndarray, gmask: np.ndarray, peak: float) -> float:
        """Steepest edges around the object relative to its contrast (1/edge width); low = out of focus.
        ``gmask``: uint8 (non-zero = object)."""
        bx, by, bw, bh = cv2.boundingRect(gmask)
        y0, y1 = max(0, by - 3), by + bh + 3
        x0, x1 = max(0, bx - 3), bx + bw + 3
        sub = s[y0:y1, x0:x1]
        g = cv2.magnitude(cv2.Sobel(sub, cv2.CV_32F, 1, 0), cv2.Sobel(sub, cv2.CV_32F, 0, 1))
        near = cv2.dilate(gmask[y0:y1, x0:x1], cls._NEAR)
        vals = g[near > 0]
        # == np.percentile(vals, 95) (linear interpolation)
        pos = 0.95 * (vals.size - 1)
        k = int(np.floor(pos))
        frac = pos - k
        if frac > 0 and k + 1 < vals.size:
            part = np.partition(vals, [k, k + 1])
            q = float(part[k]) + frac * (float(part[k + 1]) - float(part[k]))
        else:
            q = float(np.partition(vals, k)[k])
        return q * 0.125 / max(peak, 1e-3)

    def _refine(self, image: np.ndarray, a: dict, gmask: np.ndarray) -> tuple[np.ndarray, tuple, int]:
        """``gmask``: uint8 seed (reduced scale). Returns (bool mask at input resolution, tight box, pixels)."""
        p = self._p
        sc = p["scale"]
        H, W = image.shape[:2]
        h, w = gmask.shape
        bx0, by0, bw, bh = cv2.boundingRect(gmask)
        bx1, by1 = bx0 + bw, by0 + bh
        # 1) grow the core at the reduced scale, inside the reach window (appendages, pale parts)
        r = int(np.ceil(p["reach"] * max(bw, bh))) + 1
        wx0, wy0, wx1, wy1 = max(0, bx0 - r), max(0, by0 - r), min(w, bx1 + r), min(h, by1 + r)
        win = cv2.compare(a["s"][wy0:wy1, wx0:wx1], a["lo"] * p["grow_lo_factor"], cv2.CMP_GT)
        seedw = gmask[wy0:wy1, wx0:wx1]
        region = self._connected_to(win, seedw)
        cv2.bitwise_or(region, seedw, dst=region)
        rx, ry, rw, rh = cv2.boundingRect(region)
        pad = p["refine_pad"]
        x0 = max(0, (wx0 + rx) * sc - pad)
        y0 = max(0, (wy0 + ry) * sc - pad)
        x1 = min(W, (wx0 + rx + rw) * sc + pad)
        y1 = min(H, (wy0 + ry + rh) * sc + pad)
        crop = image[y0:y1, x0:x1]
        cw, ch = x1 - x0, y1 - y0
        # 2) refine at the input resolution inside that box; crop pixel (u, v) -> small-image coordinates
        m = np.array([[1 / sc, 0, (x0 + 0.5) / sc - 0.5], [0, 1 / sc, (y0 + 0.5) / sc - 0.5]], np.float32)
        bg = self._upscale_window(a["bg"], (x0, y0, x1, y1), sc)
        if bg is None:
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            bg = [cv2.warpAffine(c, m, (cw, ch), flags=flags, borderMode=cv2.BORDER_REPLICATE) for c in a["bg"]]
        seed = self._nearest_window(gmask, (x0, y0, x1, y1), sc)
        if seed is None:
            seed = cv2.warpAffine(gmask, m, (cw, ch), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
        lab = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2LAB)
        s, _ = self._score(cv2.split(lab), bg)
        rel = p["blur_rel"] if a["sharpness"] < p["blur_sharpness"] else p["rel_thresh"]
        thr = max(a["lo"] * p["full_lo_factor"], rel * a["peak"])
        fm = cv2.compare(s, thr, cv2.CMP_GT)
        local = self._connected_to(fm, seed)
        count = cv2.countNonZero(local)
        if not count:
            local = np.minimum(seed, 1)
            count = cv2.countNonZero(local)
        lx, ly, lw, lh = cv2.boundingRect(local)
        box = (x0 + lx, y0 + ly, x0 + lx + lw, y0 + ly + lh)
        out = np.zeros((H, W), bool)
        out[y0:y1, x0:x1] = local.view(bool)  # 0/1 uint8
        return out, box, int(count)

    @staticmethod
    def _upscale_window(planes: list[np.ndarray], box: tuple[int, int, int, int], sc: int) -> list[np.ndarray] | None:
        """The reduced-scale ``planes`` bilinearly upscaled by ``sc`` over the input-resolution ``box`` (x0, y0,
        x1, y1): input pixel x samples reduced coordinate (x + 0.5) / sc - 0.5, the image's edge replicated.
        cv2.resize of a window one reduced pixel wider than needed maps exactly that way and is ~10x faster than
        warpAffine (equal up to float rounding). None when the box reaches past the last whole reduced pixel."""
        x0, y0, x1, y1 = box
        h, w = planes[0].shape
        if x1 > w * sc or y1 > h * sc:
            return None
        # the window: every reduced pixel an input pixel of the box interpolates from
        wx0, wy0 = max(0, (2 * x0 + 1 - sc) // (2 * sc)), max(0, (2 * y0 + 1 - sc) // (2 * sc))
        wx1, wy1 = min(w, (2 * x1 - 1 - sc) // (2 * sc) + 2), min(h, (2 * y1 - 1 - sc) // (2 * sc) + 2)
        size = ((wx1 - wx0) * sc, (wy1 - wy0) * sc)
        u0, v0 = x0 - wx0 * sc, y0 - wy0 * sc
        return [
            cv2.resize(c[wy0:wy1, wx0:wx1], size, interpolation=cv2.INTER_LINEAR)[v0 : v0 + y1 - y0, u0 : u0 + x1 - x0]
            for c in planes
        ]

    @staticmethod
    def _nearest_window(mask: np.ndarray, box: tuple[int, int, int, int], sc: int) -> np.ndarray | None:
        """The reduced-scale ``mask`` upscaled by ``sc`` (nearest) over the input-resolution ``box``: input pixel x
        takes reduced pixel x // sc, as the warpAffine nearest map to (x + 0.5) / sc - 0.5 does, ~5x faster.
        None when the box reaches past the last whole reduced pixel."""
        x0, y0, x1, y1 = box
        h, w = mask.shape
        if x1 > w * sc or y1 > h * sc:
            return None
        wx0, wy0, wx1, wy1 = x0 // sc, y0 // sc, -(-x1 // sc), -(-y1 // sc)
        size = ((wx1 - wx0) * sc, (wy1 - wy0) * sc)
        up = cv2.resize(mask[wy0:wy1, wx0:wx1], size, interpolation=cv2.INTER_NEAREST_EXACT)
        u0, v0 = x0 - wx0 * sc, y0 - wy0 * sc
        return up[v0 : v0 + y1 - y0, u0 : u0 + x1 - x0]

    @staticmethod
    def _connected_to(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
        """uint8 0/1: the 8-connected components of ``mask`` (uint8, non-zero = in) that touch ``seed``."""
        n, lab = cv2.connectedComponents(mask, connectivity=8, ltype=cv2.CV_32S)
        touched = np.flatnonzero(np.bincount(lab[cv2.min(seed, mask) > 0], minlength=n))
        touched = touched[touched > 0]
        if touched.size == n - 1:  # every component (often the only one): the mask itself
            return cv2.threshold(mask, 0, 1, cv2.THRESH_BINARY)[1]
        if touched.size <= 4:  # a few labels: a comparison each beats a lookup of every pixel's label
            out = np.zeros(mask.shape, np.uint8)
            for label in touched:
                cv2.bitwise_or(out, cv2.compare(lab, int(label), cv2.CMP_EQ), dst=out)
            return cv2.bitwise_and(out, 1)
        keep = np.zeros(n, np.uint8)
        keep[touched] = 1
        return keep[lab]
