"""Tests for the procedural BIOSCAN-style well photos (bioscan_rebuild.synth.photos)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bioscan_rebuild.core.pilsafe import encode_jpeg
from bioscan_rebuild.synth.photos import KINDS, MARGIN, SpecimenPhoto, draw_well_photo


def _draws(kind: str, n: int, seed: int) -> list[SpecimenPhoto]:
    rng = np.random.default_rng(seed)
    return [draw_well_photo(rng, kind) for _ in range(n)]


@pytest.fixture(scope="module")
def specimens() -> list[SpecimenPhoto]:
    return _draws("specimen", 50, seed=2024)


@pytest.fixture(scope="module")
def edges() -> list[SpecimenPhoto]:
    return _draws("edge", 30, seed=7)


@pytest.fixture(scope="module")
def empties() -> list[SpecimenPhoto]:
    return _draws("empty", 10, seed=99)


def _mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_kinds_constant():
    assert KINDS == ("specimen", "empty", "edge")


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_for_same_seed(kind):
    a = draw_well_photo(np.random.default_rng(31337), kind)
    b = draw_well_photo(np.random.default_rng(31337), kind)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.mask.tobytes() == b.mask.tobytes()
    assert a.box == b.box
    assert a.kind == b.kind == kind


def test_different_seeds_give_different_photos():
    a = draw_well_photo(np.random.default_rng(1), "specimen")
    b = draw_well_photo(np.random.default_rng(2), "specimen")
    assert a.image.tobytes() != b.image.tobytes()


def test_uses_only_the_passed_generator():
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    a = draw_well_photo(np.random.default_rng(8), "specimen")
    after = np.random.get_state()[1]
    assert np.array_equal(before, after), "global numpy random state was consumed"
    np.random.seed(6)  # a different global seed must not change the output
    b = draw_well_photo(np.random.default_rng(8), "specimen")
    assert a.image.tobytes() == b.image.tobytes()


def test_sequential_draws_differ():
    rng = np.random.default_rng(3)
    a, b = draw_well_photo(rng), draw_well_photo(rng)
    assert a.image.tobytes() != b.image.tobytes()


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_dtypes(kind):
    p = draw_well_photo(np.random.default_rng(0), kind)
    assert isinstance(p, SpecimenPhoto)
    assert p.image.shape == (768, 1024, 3) and p.image.dtype == np.uint8
    assert p.mask.shape == (768, 1024) and p.mask.dtype == np.bool_
    assert p.kind == kind
    if p.box is not None:
        assert all(type(v) is int for v in p.box)


def test_custom_size():
    p = draw_well_photo(np.random.default_rng(4), "specimen", width=640, height=480)
    assert p.image.shape == (480, 640, 3)
    assert p.mask.shape == (480, 640)
    x0, y0, x1, y1 = p.box
    assert x0 >= MARGIN and y0 >= MARGIN and x1 <= 640 - MARGIN and y1 <= 480 - MARGIN


def test_rejects_unknown_kind():
    with pytest.raises(ValueError):
        draw_well_photo(np.random.default_rng(0), "beetle")


def test_box_is_tight_bbox_of_mask(specimens, edges, empties):
    for p in specimens + edges + empties:
        assert p.box == _mask_bbox(p.mask)


def test_specimen_has_mask_and_margin(specimens):
    h, w = specimens[0].mask.shape
    for p in specimens:
        assert p.box is not None and p.mask.any()
        x0, y0, x1, y1 = p.box
        assert x1 > x0 and y1 > y0
        assert x0 >= MARGIN and y0 >= MARGIN, p.box
        assert w - x1 >= MARGIN and h - y1 >= MARGIN, p.box
        assert not _touches_border(p.mask)


def test_edge_mask_reaches_border(edges):
    for p in edges:
        assert p.box is not None
        assert _touches_border(p.mask)
    # Each of the four borders gets used across draws.
    sides = set()
    for p in edges:
        m = p.mask
        sides |= {i for i, hit in enumerate((m[0].any(), m[-1].any(), m[:, 0].any(), m[:, -1].any())) if hit}
    assert sides == {0, 1, 2, 3}


def test_empty_has_no_specimen(empties):
    for p in empties:
        assert p.box is None
        assert not p.mask.any()


def test_sizes_vary(specimens):
    longer = [max(p.box[2] - p.box[0], p.box[3] - p.box[1]) for p in specimens]
    assert min(longer) < 100
    assert max(longer) > 300
    assert min(longer) >= 30 and max(longer) <= 600


def test_specimen_differs_from_surrounding_background(specimens):
    """Inside the mask the photo is, on average, clearly darker than just outside it."""
    diffs = []
    for p in specimens:
        lum = p.image.astype(np.float64).mean(axis=2)
        x0, y0, x1, y1 = p.box
        # Background ring: the box grown by 6 px, minus the mask.
        ring = np.zeros_like(p.mask)
        ring[max(0, y0 - 6) : y1 + 6, max(0, x0 - 6) : x1 + 6] = True
        ring &= ~p.mask
        diffs.append(lum[ring].mean() - lum[p.mask].mean())
    diffs = np.array(diffs)
    assert np.median(diffs) > 40
    assert (diffs > 15).mean() >= 0.8


def test_background_is_bright(empties):
    for p in empties:
        centre = p.image[284:484, 412:612].astype(np.float64)
        assert centre.mean() > 150
        # Mild noise and smooth lighting: not flat, but no wild variation.
        assert 0.3 < centre.std() < 30


def test_photo_is_not_saturated_flat(specimens):
    p = specimens[0]
    assert len(np.unique(p.image.reshape(-1, 3), axis=0)) > 1000


def test_outputs_are_read_only(specimens):
    p = specimens[0]
    with pytest.raises(ValueError):
        p.mask[0, 0] = True
    with pytest.raises(ValueError):
        p.image[0, 0, 0] = 0


def test_encode_jpeg_round_trip():
    p = draw_well_photo(np.random.default_rng(12), "specimen")
    data = encode_jpeg(p.image)
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    assert encode_jpeg(p.image) == data  # deterministic bytes
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG"
        assert im.size == (1024, 768)
        assert im.mode == "RGB"
        assert not im.info.get("progressive") and not im.info.get("progression")
        assert len(im.getexif()) == 0
        decoded = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert np.abs(decoded - p.image).mean() < 4.0  # q=90 stays close to the original


def test_encode_jpeg_quality_changes_size():
    p = draw_well_photo(np.random.default_rng(13), "specimen")
    assert len(encode_jpeg(p.image, quality=30)) < len(encode_jpeg(p.image, quality=95))


def test_encode_jpeg_rejects_bad_input():
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((10, 10, 3), dtype=np.uint8), quality=0)
