"""Procedurally drawn stand-ins for BIOSCAN robotic-imager photos.

Each photo shows one microplate well seen from above (default 1024x768, RGB):
a bright, slightly tinted background with a large round or rounded-square well
whose darker rim may be cut off by the frame, a smooth illumination gradient and
vignette, a soft specular highlight, a few tiny dust specks and mild sensor
noise.  Unless the photo is ``"empty"`` it also shows one small insect-like
specimen: head, thorax and abdomen ellipses along a randomly rotated body axis,
six jointed legs, two antennae and, for some body plans, a pair of
semi-transparent wings.

Ground truth is exact.  Every organism part is rasterised at 2x or 4x
super-sampling; the per-pixel coverage both anti-aliases the paint and defines
the mask, which is True where the coverage of any organism part (body, legs,
antennae, wings or wing veins) is >= 0.5.  Dust and the well are never part of
the mask.

Box convention: ``box = (x0, y0, x1, y1)`` in pixel indices with ``x1`` and
``y1`` EXCLUSIVE, i.e. ``mask[y0:y1, x0:x1]`` is the tightest crop holding
every mask pixel, ``w = x1 - x0`` and ``h = y1 - y0``.  ``box`` is ``None``
exactly when the mask is empty.

Kinds: ``"specimen"`` keeps the whole mask at least 8 px away from every image
border; ``"edge"`` places the specimen so the mask reaches the image border
(row 0, the last row, column 0 or the last column) and is usually cut by it;
``"empty"`` has no specimen.

All randomness comes from the ``numpy.random.Generator`` passed in, so the same
generator state always yields byte-identical arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import cv2
import numpy as np

__all__ = ["KINDS", "SpecimenPhoto", "draw_well_photo"]

KINDS = ("specimen", "empty", "edge")

# Minimum distance (px) between the mask and the image border for "specimen".
MARGIN = 8

# Longer side of the specimen's tight box is drawn log-uniformly in this range.
_MIN_SIZE = 40.0
_MAX_SIZE = 550.0

# cv2 fixed-point fraction bits, for sub-pixel accurate drawing.
_SHIFT = 4
_ONE = 1 << _SHIFT

# Standard-normal quantiles of 256 equiprobable bins, for cheap noise.
_NORMAL_LUT = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float32)


@dataclass(frozen=True)
class SpecimenPhoto:
    """One drawn photo and its exact ground truth."""

    image: np.ndarray  # (height, width, 3) uint8, RGB
    box: tuple[int, int, int, int] | None  # (x0, y0, x1, y1), x1/y1 exclusive
    mask: np.ndarray  # (height, width) bool, True on organism pixels
    kind: str


def draw_well_photo(
    rng: np.random.Generator,
    kind: str = "specimen",
    width: int = 1024,
    height: int = 768,
) -> SpecimenPhoto:
    """Draw one well photo of the given kind (see ``KINDS``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    width, height = int(width), int(height)
    if width < 128 or height < 128:
        raise ValueError(f"image must be at least 128x128, got {width}x{height}")

    img, well = _draw_background(rng, width, height)
    _draw_dust(rng, img)
    mask = np.zeros((height, width), dtype=bool)
    if kind != "empty":
        _draw_specimen(rng, img, mask, kind, well)
    _add_sensor_noise(rng, img)
    np.clip(img, 0.0, 255.0, out=img)
    img += 0.5  # so the truncating cast below rounds to nearest
    image = img.astype(np.uint8)

    box = bbox_of_mask(mask)
    image.setflags(write=False)
    mask.setflags(write=False)
    return SpecimenPhoto(image=image, box=box, mask=mask, kind=kind)


def bbox_of_mask(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight (x0, y0, x1, y1) box of a boolean mask, x1/y1 exclusive; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


# --------------------------------------------------------------------------
# Background


@dataclass(frozen=True)
class _Well:
    cx: float
    cy: float
    radius: float


def _draw_background(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, _Well]:
    """Bright plate well, returned as float32 (h, w, 3) in 0..255."""
    # Everything here is smooth, so compute it at 1/4 resolution and upsample.
    ds = 4
    lw, lh = -(-w // ds), -(-h // ds)
    # Low-res sample centres expressed in full-resolution pixel coordinates,
    # matching how cv2.resize(INTER_LINEAR) maps pixel centres.
    xs = ((np.arange(lw, dtype=np.float32) + 0.5) * (w / lw))[None, :]
    ys = ((np.arange(lh, dtype=np.float32) + 0.5) * (h / lh))[:, None]

    cx = w / 2 + rng.normal(0.0, 0.07 * w)
    cy = h / 2 + rng.normal(0.0, 0.07 * h)
    radius = rng.uniform(0.42, 0.75) * w
    dx, dy = np.abs(xs - cx), np.abs(ys - cy)
    if rng.random() < 0.7:
        r = np.sqrt(dx * dx + dy * dy)
    else:  # rounded-square well: superellipse distance
        p = rng.uniform(3.0, 5.0)
        r = (dx**p + dy**p) ** (1.0 / p)
    phi = np.arctan2(ys - cy, xs - cx)

    # Plate plastic outside the well is darker than the lit well floor.
    outside = rng.uniform(0.70, 0.90)
    soft = rng.uniform(3.0, 12.0)
    inside = 1.0 / (1.0 + np.exp(np.clip((r - radius) / soft, -30, 30)))
    field = outside + (1.0 - outside) * inside

    # Rim shadow ring, deeper on the side away from the light.
    rim_w = rng.uniform(8.0, 28.0)
    rim_d = rng.uniform(0.10, 0.35)
    asym = rng.uniform(0.0, 0.7)
    rim_phi = rng.uniform(0, 2 * np.pi)
    depth = rim_d * (1.0 + asym * np.cos(phi - rim_phi)) / (1.0 + asym)
    field *= 1.0 - depth * np.exp(-(((r - radius + 0.5 * rim_w) / rim_w) ** 2))
    # Gradual shading inward from the wall, and a thin bright meniscus line.
    wall_fall = rng.uniform(40.0, 160.0)
    field *= 1.0 - rng.uniform(0.0, 0.08) * np.exp(-np.maximum(radius - r, 0) / wall_fall) * inside
    field += rng.uniform(0.0, 0.05) * np.exp(-(((r - radius + 2.2 * rim_w) / (0.35 * rim_w)) ** 2))

    # Smooth illumination: linear gradient times radial vignette.
    gx, gy = rng.uniform(-0.08, 0.08, size=2)
    field *= 1.0 + gx * (xs / w - 0.5) + gy * (ys / h - 0.5)
    vig = rng.uniform(0.03, 0.15)
    field *= 1.0 - vig * (((xs - w / 2) ** 2 + (ys - h / 2) ** 2) / ((w * w + h * h) / 4))

    # Soft specular reflection of the lamp in the liquid.
    if rng.random() < 0.6:
        sx = cx + rng.uniform(-0.5, 0.5) * radius
        sy = cy + rng.uniform(-0.5, 0.5) * radius
        sig = rng.uniform(25.0, 110.0)
        field += rng.uniform(0.03, 0.12) * np.exp(-((xs - sx) ** 2 + (ys - sy) ** 2) / (2 * sig * sig))

    # Near-white to pale blue-grey tint; the plastic outside is a bit bluer.
    bright = rng.uniform(0.84, 0.97) * 255.0
    blue = rng.uniform(0.0, 0.07)
    warm = rng.uniform(-0.02, 0.03)
    tint_in = np.array([1.0 - blue + warm, 1.0 - 0.4 * blue, 1.0 + 0.3 * blue - warm])
    tint_out = tint_in * np.array([1.0 - rng.uniform(0, 0.05), 1.0, 1.0 + rng.uniform(0, 0.04)])
    tint_in, tint_out = tint_in / tint_in.max(), tint_out / tint_out.max()
    tint = inside[..., None] * tint_in + (1.0 - inside[..., None]) * tint_out
    low = (field[..., None] * tint * bright).astype(np.float32)

    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    return img, _Well(float(cx), float(cy), float(radius))


def _draw_dust(rng: np.random.Generator, img: np.ndarray) -> None:
    """A few tiny dark specks (a few px each); never part of the mask."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 6))):
        x, y = rng.uniform(4, w - 4), rng.uniform(4, h - 4)
        sig = rng.uniform(0.5, 1.3)
        dark = rng.uniform(0.25, 0.7)
        x0, y0 = int(x) - 4, int(y) - 4
        gy, gx = np.mgrid[y0 : y0 + 9, x0 : x0 + 9].astype(np.float32) + 0.5
        blob = np.exp(-((gx - x) ** 2 + (gy - y) ** 2) / (2 * sig * sig))
        img[y0 : y0 + 9, x0 : x0 + 9] *= (1.0 - dark * blob)[..., None]


def _add_sensor_noise(rng: np.random.Generator, img: np.ndarray) -> None:
    """Mild noise: per-pixel luminance noise plus weaker, coarser chroma noise."""
    h, w = img.shape[:2]
    sigma = rng.uniform(0.8, 2.5)
    # Gaussian noise via a 256-entry inverse-CDF table indexed by random bytes:
    # several times cheaper than standard_normal, and plenty for sensor noise.
    lum = (_NORMAL_LUT * np.float32(sigma))[rng.integers(0, 256, (h, w), dtype=np.uint8)]
    img += lum[..., None]
    # Chroma noise at half resolution keeps the cost low (Bayer demosaicing
    # blurs chroma anyway).
    hh, hw = -(-h // 2), -(-w // 2)
    chroma = (_NORMAL_LUT * np.float32(0.5 * sigma))[rng.integers(0, 256, (hh, hw, 3), dtype=np.uint8)]
    img += cv2.resize(chroma, (w, h), interpolation=cv2.INTER_NEAREST)


# --------------------------------------------------------------------------
# Specimen geometry (unit coordinates: body length 1, head towards +x)


@dataclass
class _Part:
    cx: float  # centre along the body axis
    a: float  # semi-axis along the body
    b: float  # semi-axis across the body
    name: str


@dataclass
class _Insect:
    parts: list[_Part]  # body ellipses, drawn in order (later on top)
    wings: list[np.ndarray]  # filled convex polygons
    veins: list[np.ndarray]  # thin polylines inside the wings
    legs: list[np.ndarray]  # polylines
    antennae: list[np.ndarray]  # polylines
    abd_start: float
    abd_len: float


# Body plans: ranges for (head len, thorax len, abdomen width/len, thorax width/len,
# leg length, antenna length, wing probability, wing length, wing width).
_PLANS = {
    "fly": dict(
        h=(0.15, 0.21),
        t=(0.28, 0.36),
        aw=(0.55, 0.80),
        tw=(0.75, 0.95),
        hw=(1.1, 1.5),
        leg=(0.45, 0.70),
        ant=(0.05, 0.12),
        wing=0.85,
        wl=(0.65, 0.95),
        ww=(0.22, 0.32),
    ),
    "wasp": dict(
        h=(0.14, 0.19),
        t=(0.24, 0.30),
        aw=(0.32, 0.45),
        tw=(0.55, 0.75),
        hw=(1.0, 1.3),
        leg=(0.50, 0.80),
        ant=(0.30, 0.65),
        wing=0.8,
        wl=(0.50, 0.70),
        ww=(0.14, 0.20),
    ),
    "beetle": dict(
        h=(0.10, 0.16),
        t=(0.18, 0.26),
        aw=(0.55, 0.75),
        tw=(1.10, 1.60),
        hw=(0.9, 1.2),
        leg=(0.32, 0.50),
        ant=(0.18, 0.45),
        wing=0.0,
        wl=(0, 0),
        ww=(0, 0),
    ),
    "midge": dict(
        h=(0.10, 0.14),
        t=(0.22, 0.28),
        aw=(0.18, 0.28),
        tw=(0.65, 0.85),
        hw=(0.9, 1.2),
        leg=(0.80, 1.40),
        ant=(0.25, 0.55),
        wing=0.75,
        wl=(0.45, 0.65),
        ww=(0.12, 0.18),
    ),
    "bug": dict(
        h=(0.12, 0.18),
        t=(0.22, 0.30),
        aw=(0.45, 0.65),
        tw=(0.9, 1.3),
        hw=(0.9, 1.3),
        leg=(0.40, 0.65),
        ant=(0.20, 0.50),
        wing=0.45,
        wl=(0.55, 0.75),
        ww=(0.16, 0.24),
    ),
}
_PLAN_NAMES = tuple(_PLANS)
_PLAN_P = np.array([0.30, 0.20, 0.20, 0.15, 0.15])


def _ellipse_pts(cx: float, cy: float, a: float, b: float, ang: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    ca, sa = math.cos(ang), math.sin(ang)
    x, y = a * np.cos(t), b * np.sin(t)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def _polyline(x: float, y: float, ang: float, lengths: list[float], bends: list[float]) -> np.ndarray:
    pts = [(x, y)]
    for seg, bend in zip(lengths, bends, strict=True):
        ang += bend
        x, y = x + seg * math.cos(ang), y + seg * math.sin(ang)
        pts.append((x, y))
    return np.asarray(pts)


def _make_insect(rng: np.random.Generator, plan: dict) -> _Insect:
    u = rng.uniform
    h = u(*plan["h"])
    t = u(*plan["t"])
    a = 1.0 - h - t + 0.06  # parts overlap a little at the joints
    abd_w = a * u(*plan["aw"])
    tho_w = t * u(*plan["tw"])
    head_w = min(h * u(*plan["hw"]), tho_w * 1.1)
    tho_cx = 0.5 - h - t / 2 + 0.03
    head_cx = 0.5 - h / 2
    abd_cx = -0.5 + a / 2
    parts = [_Part(abd_cx, a / 2, abd_w / 2, "abdomen")]
    if plan is _PLANS["wasp"]:
        # Narrow waist: shrink the abdomen backwards and add a thin petiole.
        gap = u(0.05, 0.09)
        parts = [
            _Part(abd_cx - gap / 2, a / 2 - gap / 2, abd_w / 2, "abdomen"),
            _Part(-0.5 + a - gap / 2 - 0.015, gap / 2 + 0.03, abd_w * 0.12, "petiole"),
        ]
    parts.append(_Part(tho_cx, t / 2 + 0.01, tho_w / 2, "thorax"))
    parts.append(_Part(head_cx, h / 2, head_w / 2, "head"))

    # Wings, hinged at the rear of the thorax and swept backwards.
    wings, veins = [], []
    if rng.random() < plan["wing"]:
        wl, ww = u(*plan["wl"]), u(*plan["ww"])
        spread = u(0.10, 0.65)
        for side in (-1.0, 1.0):
            ang = math.pi - side * (spread + u(-0.08, 0.08))
            bx, by = tho_cx - 0.1 * t, side * tho_w * 0.25
            ca, sa = math.cos(ang), math.sin(ang)
            cx, cy = bx + ca * wl * 0.48, by + sa * wl * 0.48
            wings.append(_ellipse_pts(cx, cy, wl / 2, ww / 2, ang))
            # Leading-edge and a central vein, kept inside the membrane.
            s = np.linspace(-0.9, 0.85, 6)
            lead = np.stack(
                [
                    cx + ca * s * wl / 2 - sa * (-side) * ww * 0.35 * np.sqrt(1 - s**2),
                    cy + sa * s * wl / 2 + ca * (-side) * ww * 0.35 * np.sqrt(1 - s**2),
                ],
                1,
            )
            mid = np.stack([cx + ca * s * wl / 2 * 0.9, cy + sa * s * wl / 2 * 0.9], 1)
            veins += [lead, mid]

    # Six legs from the thorax: front legs point forward, hind legs backward.
    legs = []
    base_len = u(*plan["leg"])
    curled = rng.random() < 0.25  # dead specimens often curl their legs in
    for i, (xoff, ang0, scale) in enumerate(((0.28, 0.95, 0.85), (0.0, 1.62, 1.0), (-0.28, 2.35, 1.2))):
        for side in (-1.0, 1.0):
            ang = ang0 + u(-0.3, 0.3)
            length = base_len * scale * u(0.85, 1.15)
            if rng.random() < 0.7:
                segs = [0.4 * length, 0.4 * length, 0.2 * length]
            else:
                segs = [0.5 * length, 0.5 * length]
            bend_dir = (-1.0, rng.choice((-1.0, 1.0)), 1.0)[i]
            if curled:
                bends = [0.0] + [u(0.6, 1.4) * rng.choice((-1.0, 1.0)) for _ in segs[1:]]
            else:
                bends = [0.0] + [bend_dir * u(0.15, 0.8) for _ in segs[1:]]
            pts = _polyline(tho_cx + xoff * t, tho_w * 0.3, ang, segs, bends)
            pts[:, 1] *= side
            legs.append(pts)

    # Two antennae from the front of the head.
    antennae = []
    ant_len = u(*plan["ant"])
    nseg = int(rng.integers(3, 6))
    for side in (-1.0, 1.0):
        ang = u(0.15, 0.85)
        bends = [0.0] + [u(-0.25, 0.25) for _ in range(nseg - 1)]
        pts = _polyline(head_cx + 0.6 * h / 2, head_w * 0.2, ang, [ant_len / nseg] * nseg, bends)
        pts[:, 1] *= side
        antennae.append(pts)

    abd = parts[0]
    return _Insect(parts, wings, veins, legs, antennae, abd.cx - abd.a, 2 * abd.a)


# Body colours (RGB) and how often they occur; "pale" specimens have low contrast.
_COLOURS = (
    ("black", (32, 29, 27), 0.24),
    ("brown", (82, 55, 33), 0.22),
    ("amber", (196, 140, 58), 0.13),
    ("yellow", (214, 184, 92), 0.06),
    ("green", (96, 126, 58), 0.08),
    ("grey", (118, 114, 106), 0.12),
    ("pale", (212, 204, 184), 0.15),
)
_COLOUR_P = np.array([c[2] for c in _COLOURS])


# --------------------------------------------------------------------------
# Specimen drawing


def _draw_specimen(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, kind: str, well: _Well) -> None:
    h, w = img.shape[:2]
    plan_name = _PLAN_NAMES[int(rng.choice(len(_PLAN_NAMES), p=_PLAN_P))]
    insect = _make_insect(rng, _PLANS[plan_name])
    theta = rng.uniform(0.0, 2 * np.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])

    body_polys = [_ellipse_pts(p.cx, 0.0, p.a, p.b, 0.0, 64) for p in insect.parts]
    all_pts = np.concatenate(body_polys + insect.wings + insect.legs + insect.antennae) @ rot.T
    lo, hi = all_pts.min(axis=0), all_pts.max(axis=0)

    # Longer side of the box, log-uniform; must also fit smaller custom frames.
    size = math.exp(rng.uniform(math.log(_MIN_SIZE), math.log(_MAX_SIZE)))
    size = min(size, min(w, h) - 2 * (MARGIN + 8))
    scale = size / float((hi - lo).max())
    leg_px = int(np.clip(round(size * rng.uniform(0.005, 0.009)), 1, 3))
    ant_px = max(1, leg_px - int(rng.integers(0, 2)))
    pad = leg_px / 2 + 2.0  # how far thick strokes may reach beyond the points

    style = _body_style(rng, plan_name)
    lo_px, hi_px = lo * scale, hi * scale
    for _ in range(50):
        if kind == "specimen":
            centre = _place_inside(rng, lo_px, hi_px, pad, w, h, well)
        else:
            centre = _place_on_edge(rng, insect, rot, scale, w, h)
        x0 = max(0, int(math.floor(centre[0] + lo_px[0] - pad)))
        y0 = max(0, int(math.floor(centre[1] + lo_px[1] - pad)))
        x1 = min(w, int(math.ceil(centre[0] + hi_px[0] + pad)) + 1)
        y1 = min(h, int(math.ceil(centre[1] + hi_px[1] + pad)) + 1)
        if x1 <= x0 or y1 <= y0:
            continue

        def to_img(p: np.ndarray, centre: np.ndarray = centre) -> np.ndarray:
            return centre + (p @ rot.T) * scale

        cw, ch = x1 - x0, y1 - y0
        ss = 4 if max(cw, ch) <= 256 else 2
        origin = np.array([x0, y0], dtype=np.float64)
        cov = {
            # Legs taper: the femur is drawn thicker than the distal segments.
            "app": _coverage(
                [("line", to_img(p[:2]), leg_px) for p in insect.legs]
                + [("line", to_img(p[1:]), max(1, leg_px - 1)) for p in insect.legs]
                + [("line", to_img(p), ant_px) for p in insect.antennae],
                origin,
                cw,
                ch,
                ss,
            ),
            "body": _coverage([("poly", to_img(p), 0) for p in body_polys], origin, cw, ch, ss),
            "wing": _coverage([("poly", to_img(p), 0) for p in insect.wings], origin, cw, ch, ss),
            "vein": _coverage([("line", to_img(p), 1) for p in insect.veins], origin, cw, ch, ss),
        }
        half = (ss * ss) // 2
        crop_mask = np.zeros((ch, cw), dtype=bool)
        for counts in cov.values():
            crop_mask |= counts >= half
        if kind == "edge" and not _touches_border(crop_mask, x0, y0, x1, y1, w, h):
            continue  # rare: only a thin sliver reached the border; re-place
        break
    else:  # pragma: no cover - geometry makes this practically unreachable
        raise RuntimeError("could not place specimen")

    crop = img[y0:y1, x0:x1]
    if style["colour"] == "pale":
        # Pale specimens sit just around the local background level, whatever
        # the exposure, so a share of photos stays genuinely hard to detect.
        gain = float(crop.mean()) * style["pale_level"] / float(style["abdomen"].mean())
        for key in ("abdomen", "thorax", "head", "app"):
            style[key] = np.clip(style[key] * gain, 0, 255).astype(np.float32)
    # Composite only the pixels some part touches (usually a small share of the crop).
    py, px = np.nonzero(cov["app"] | cov["body"] | cov["wing"] | cov["vein"])
    inv = np.float32(1.0 / (ss * ss))
    alpha = {k: v[py, px].astype(np.float32) * inv for k, v in cov.items()}
    colour = _body_colour(insect, style, centre, theta, scale, px + (x0 + 0.5), py + (y0 + 0.5))
    pix = crop[py, px]
    _over(pix, style["app"], alpha["app"])
    _over(pix, colour, alpha["body"])
    _over(pix, style["wing"], alpha["wing"] * np.float32(style["wing_alpha"]))
    _over(pix, style["vein"], alpha["vein"] * np.float32(min(1.0, style["wing_alpha"] + 0.3)))
    crop[py, px] = pix
    mask[y0:y1, x0:x1] = crop_mask


def _place_inside(rng, lo_px, hi_px, pad, w, h, well) -> np.ndarray:
    """Centre such that the padded extent stays >= MARGIN + 2 px inside the frame."""
    m = MARGIN + 2 + pad
    lo_c = np.array([m - lo_px[0], m - lo_px[1]])
    hi_c = np.array([w - 1 - m - hi_px[0], h - 1 - m - hi_px[1]])
    hi_c = np.maximum(lo_c, hi_c)
    # Mostly near the middle of the well (the robot centres specimens roughly);
    # otherwise, or if that falls outside the range, anywhere allowed.  Resampling
    # rather than clipping avoids piling specimens up against the margin.
    target = np.array([well.cx, well.cy]) + rng.normal(0.0, 0.15, 2) * np.array([w, h])
    fallback = rng.uniform(lo_c, hi_c)
    if rng.random() < 0.3 or np.any(target < lo_c) or np.any(target > hi_c):
        return fallback
    return target


def _place_on_edge(rng, insect: _Insect, rot, scale, w, h) -> np.ndarray:
    """Centre such that a point deep inside the abdomen or thorax sits on a border."""
    part = insect.parts[0] if rng.random() < 0.6 else insect.parts[-2]
    anchor = np.array([part.cx + rng.uniform(-0.5, 0.5) * part.a, 0.0]) @ rot.T * scale
    # A disc of this radius around the anchor lies inside the body ellipse.
    r0 = 0.5 * min(part.b, part.a) * scale
    off = rng.uniform(-0.5, 0.5) * r0
    side = int(rng.integers(0, 4))
    pos = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    if side == 0:
        pos[0] = off
    elif side == 1:
        pos[0] = w - off
    elif side == 2:
        pos[1] = off
    else:
        pos[1] = h - off
    return pos - anchor


def _touches_border(crop_mask, x0, y0, x1, y1, w, h) -> bool:
    return bool(
        (x0 == 0 and crop_mask[:, 0].any())
        or (y0 == 0 and crop_mask[0, :].any())
        or (x1 == w and crop_mask[:, -1].any())
        or (y1 == h and crop_mask[-1, :].any())
    )


def _coverage(items, origin: np.ndarray, cw: int, ch: int, ss: int) -> np.ndarray:
    """Rasterise shapes at ss x ss super-sampling; return per-pixel sub-sample counts.

    Shapes are drawn with value ss**2 on a zero layer, so INTER_AREA's mean over
    each ss x ss block is exactly the integer count (0..ss**2) of covered
    sub-samples; coverage is count / ss**2 and the mask is count >= ss**2 / 2.
    """
    val = ss * ss
    layer = np.zeros((ch * ss, cw * ss), dtype=np.uint8)
    for kind, pts, thick in items:
        # Pixel j spans [j, j+1); cv2 puts integer sub-pixel k at its centre.
        p = np.rint(((pts - origin) * ss - 0.5) * _ONE).astype(np.int32)
        if kind == "poly":
            cv2.fillConvexPoly(layer, p, val, cv2.LINE_8, _SHIFT)
        else:
            cv2.polylines(layer, [p], False, val, max(1, thick * ss), cv2.LINE_8, _SHIFT)
    return cv2.resize(layer, (cw, ch), interpolation=cv2.INTER_AREA)


def _over(crop: np.ndarray, colour, alpha: np.ndarray) -> None:
    """Alpha-composite colour (RGB triple or (h, w, 3) field) over crop in place."""
    a = alpha[..., None]
    crop += a * (np.asarray(colour, dtype=np.float32) - crop)


def _body_style(rng: np.random.Generator, plan_name: str) -> dict:
    u = rng.uniform
    name, base, _ = _COLOURS[int(rng.choice(len(_COLOURS), p=_COLOUR_P))]
    base = np.asarray(base, dtype=np.float32) * u(0.85, 1.15) + rng.normal(0, 6, 3)
    base = np.clip(base, 10, 235).astype(np.float32)
    dark = name in ("black", "brown")
    thorax = base * u(0.75, 1.05)
    head = base * u(0.70, 1.05)
    bands = u(0.05, 0.2)
    if name in ("amber", "yellow") and rng.random() < 0.5:
        # Wasp/hoverfly look: dark fore-body and strongly banded abdomen.
        thorax, head = base * u(0.25, 0.45), base * u(0.25, 0.5)
        bands = u(0.45, 0.8)
    app = (thorax if rng.random() < 0.6 else base) * u(0.6, 1.0)
    return dict(
        colour=name,
        abdomen=base,
        thorax=np.clip(thorax, 8, 240),
        head=np.clip(head, 8, 240),
        app=np.clip(app, 8, 240).astype(np.float32),
        bands=bands,
        n_bands=int(rng.integers(4, 8)),
        seam=u(0.2, 0.5) if plan_name == "beetle" else 0.0,
        # Pale (teneral or translucent) specimens are shaded weakly, keeping
        # their contrast against the bright well low.
        ambient=u(0.72, 0.9) if name == "pale" else u(0.40, 0.60),
        light=(u(0, 2 * np.pi), u(0.55, 0.9)),
        gloss=u(0.15, 0.45) if dark else u(0.04, 0.18),
        shine=u(8.0, 30.0),
        wing=(np.array([175, 170, 160], np.float32) * u(0.75, 1.1) + rng.normal(0, 6, 3)).astype(np.float32),
        vein=(np.array([95, 85, 70], np.float32) * u(0.7, 1.3)).astype(np.float32),
        wing_alpha=u(0.3, 0.6),
        pale_level=u(0.92, 1.06),
    )


def _body_colour(
    insect: _Insect, style: dict, centre, theta: float, scale: float, xs: np.ndarray, ys: np.ndarray
) -> np.ndarray:
    """Shaded (n, 3) RGB body colour at image points (xs, ys), ellipsoid lighting."""
    xs = xs.astype(np.float32) - np.float32(centre[0])
    ys = ys.astype(np.float32) - np.float32(centre[1])
    c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    inv = np.float32(1.0 / scale)
    u = (xs * c + ys * s) * inv  # along the body axis, body-length units
    v = (ys * c - xs * s) * inv  # across the body

    # Per pixel: the topmost part containing it, else the part it is closest to
    # (the anti-aliased fringe just outside the ellipses).
    q = np.stack([((u - p.cx) / p.a) ** 2 + (v / p.b) ** 2 for p in insect.parts])
    idx = np.argmin(q, axis=0)
    for i in range(len(insect.parts)):
        idx[q[i] < 1.0] = i
    qsel = np.take_along_axis(q, idx[None], 0)[0]
    cxs = np.array([p.cx for p in insect.parts], np.float32)[idx]
    as_ = np.array([p.a for p in insect.parts], np.float32)[idx]
    bs = np.array([p.b for p in insect.parts], np.float32)[idx]

    # Ellipsoid normal (scaled coordinates): gives rounded, shaded segments.
    nx, ny = (u - cxs) / as_, v / bs
    nz = np.sqrt(np.maximum(1.0 - qsel, 0.0))
    nrm = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-6
    # Light direction is fixed in the image, so rotate it into body coordinates.
    lphi, lz = style["light"]
    lxy = math.sqrt(1 - lz * lz)
    lx, ly = lxy * math.cos(lphi - theta), lxy * math.sin(lphi - theta)
    ndotl = np.maximum((nx * lx + ny * ly + nz * lz) / nrm, 0.0)
    shade = style["ambient"] + (1.0 - style["ambient"]) * ndotl
    hx, hy, hz = lx, ly, lz + 1.0
    hn = math.sqrt(hx * hx + hy * hy + hz * hz)
    spec = style["gloss"] * np.maximum((nx * hx + ny * hy + nz * hz) / (nrm * hn), 0.0) ** style["shine"]

    names = [p.name for p in insect.parts]
    table = np.stack([style[n] if n in style else style["thorax"] for n in names]).astype(np.float32)
    col = table[idx]
    abd = (idx == 0)[..., None]
    # Abdominal segments as darker bands; beetles get a dark elytral seam.
    phase = (u - insect.abd_start) / insect.abd_len * style["n_bands"]
    band = 1.0 - style["bands"] * (0.5 + 0.5 * np.cos(2 * np.pi * phase)) ** 3
    if style["seam"]:
        band *= 1.0 - style["seam"] * np.exp(-((v / (0.05 * bs)) ** 2))
    col = np.where(abd, col * band[..., None], col)
    col *= shade[..., None]
    col += (spec * 255.0)[..., None]
    return col.astype(np.float32)
