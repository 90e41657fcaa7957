"""Crop geometry and size fields exactly as the published BIOSCAN-5M dataset defines them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bioscan_rebuild.images.geometry import (
    BIOSCAN_PAD_COLOR,
    CropPlan,
    apply_crop,
    crop_padded,
    enlarge_box,
    fit_within,
    plan_crop,
    resize_short_side,
    rotate_box_ccw,
    size_fields,
    to_aspect,
    touches_edge,
)


def test_real_example_from_the_spec():
    # Box x 339-533, y 208-493 on a 1024x768 original: area_fraction 0.0703, scale_factor 0.7578.
    assert size_fields((339, 208, 533, 493), 1024, 768) == (0.0703, 0.7578)


def test_enlarge_moves_each_side_by_the_same_truncated_amount():
    # w=194, h=285: e = 0.4*285 = 114, each side out by 57.
    assert enlarge_box((339, 208, 533, 493)) == (282, 151, 590, 550)
    # e/2 = 0.4*101/2 = 20.2 -> 20 (truncated)
    assert enlarge_box((0, 0, 101, 50)) == (-20, -20, 121, 70)


def test_portrait_boxes_rotate_to_landscape_and_become_exactly_4_to_3():
    plan = plan_crop((339, 208, 533, 493), 1024, 768)
    assert plan.rotate  # enlarged box 308 x 399 is portrait
    x0, y0, x1, y1 = plan.box
    assert (x1 - x0) * 3 == (y1 - y0) * 4
    assert (x1 - x0) >= 399 and (y1 - y0) >= 308
    landscape = plan_crop((100, 100, 400, 200), 1024, 768)
    assert not landscape.rotate
    w, h = landscape.box[2] - landscape.box[0], landscape.box[3] - landscape.box[1]
    assert w * 3 == h * 4


def test_rotation_remaps_the_box_onto_the_same_pixels():
    image = np.zeros((60, 80, 3), np.uint8)
    image[10:20, 30:35] = 255  # a 5-wide, 10-tall blob
    rotated = np.rot90(image, k=1)
    x0, y0, x1, y1 = rotate_box_ccw((30, 10, 35, 20), width=80)
    assert rotated.shape[:2] == (80, 60)
    assert rotated[y0:y1, x0:x1].min() == 255 and rotated.sum() == image.sum()
    assert (x1 - x0, y1 - y0) == (10, 5)


def test_to_aspect_is_symmetric():
    assert to_aspect((10, 10, 50, 20)) == (10, 0, 50, 30)  # 40 wide -> 30 tall, 10 added each side
    assert to_aspect((0, 0, 30, 30)) == (-5, 0, 35, 30)  # 30 tall -> 40 wide (k=10)
    assert to_aspect((0, 0, 41, 3)) == (-1, -15, 43, 18)  # k=11: 44 x 33; odd leftover goes right


def test_padding_at_borders_uses_the_bioscan_colour():
    image = np.full((100, 200, 3), 7, np.uint8)
    crop = crop_padded(image, (-10, -5, 30, 25))
    assert crop.shape == (30, 40, 3)
    assert (crop[:5, :, :] == BIOSCAN_PAD_COLOR).all() and (crop[:, :10, :] == BIOSCAN_PAD_COLOR).all()
    assert (crop[5:, 10:, :] == 7).all()
    outside = crop_padded(image, (300, 300, 340, 330))
    assert (outside == BIOSCAN_PAD_COLOR).all()


def test_specimen_at_the_edge_is_padded_after_rotation():
    image = np.full((768, 1024, 3), 100, np.uint8)
    plan = plan_crop((0, 600, 60, 768), 1024, 768)  # tall box touching left and bottom edges
    crop = apply_crop(image, plan)
    assert plan.rotate and crop.shape[1] * 3 == crop.shape[0] * 4
    assert (crop == BIOSCAN_PAD_COLOR).all(axis=2).any() and (crop == 100).all(axis=2).any()


def test_rotated_crop_equals_cropping_the_turned_photo():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    for box in [(10, 20, 40, 60), (-7, 100, 30, 130), (50, -4, 95, 30), (0, 0, 90, 120), (-5, -5, 200, 200)]:
        plan = CropPlan(box=box, rotate=True)
        reference = crop_padded(np.rot90(image, k=1), box)
        assert np.array_equal(apply_crop(image, plan), reference), box


def test_resizes():
    assert resize_short_side(np.zeros((768, 1024, 3), np.uint8)).shape == (256, 341, 3)
    assert resize_short_side(np.zeros((2160, 2880, 3), np.uint8)).shape == (256, 341, 3)
    assert resize_short_side(np.zeros((300, 400, 3), np.uint8)).shape == (256, 341, 3)
    assert resize_short_side(np.zeros((100, 50, 3), np.uint8)).shape == (512, 256, 3)
    assert fit_within(2880, 2160) == (1024, 768)
    assert fit_within(1024, 768) == (1024, 768)
    assert fit_within(640, 480) == (640, 480)  # never enlarged
    assert fit_within(4000, 1000) == (1024, 256)


@pytest.mark.parametrize(
    "box,edge",
    [
        ((0, 5, 10, 10), True),  # on the left edge
        ((5, 0, 10, 10), True),  # on the top edge, exactly 0
        ((5, -3, 10, 10), True),  # past the top edge
        ((5, 5, 1024, 10), True),  # on the right edge (exclusive end = width)
        ((5, 5, 10, 768), True),  # on the bottom edge
        ((1, 1, 1023, 767), False),  # one pixel in from every edge
    ],
)
def test_touches_edge(box, edge):
    assert touches_edge(box, 1024, 768) is edge


def test_enlargement_is_truncated_not_rounded():
    # The spec: e = 0.4 * max(w, h), each side out by e/2 *truncated*. max side 103: e/2 = 20.6 -> 20, not 21.
    assert enlarge_box((10, 10, 113, 60)) == (-10, -10, 133, 80)
    # and an exact half: max side 105 -> e/2 = 21.0 exactly (no truncation artefact from float)
    assert enlarge_box((0, 0, 105, 105)) == (-21, -21, 126, 126)


def test_a_square_box_is_not_rotated():
    # The spec rotates a box only when it is *taller* than wide: a square one stays as it is, and becomes 4:3
    # by widening: 140 x 140 after enlarging (100 + 2 * 20) -> k = max(ceil(140/4), ceil(140/3)) = 47 -> 188 x 141.
    plan = plan_crop((200, 200, 300, 300), 1024, 768)
    assert plan == CropPlan(rotate=False, box=(200 - 20 - 24, 200 - 20 + 0, 200 - 20 - 24 + 188, 200 - 20 + 141))


def test_size_fields_round_to_four_decimals():
    # 100 x 100 box on a 1024 x 768 original: 10000 / 786432 = 0.012715... -> 0.0127 (not 0.01272);
    # 100 / 256 = 0.390625 -> 0.3906.
    assert size_fields((0, 0, 100, 100), 1024, 768) == (0.0127, 0.3906)
    # scale_factor takes the shorter side: 512 x 128 -> 128 / 256 = 0.5; area 65536 / 786432 = 0.083333... -> 0.0833.
    assert size_fields((10, 20, 522, 148), 1024, 768) == (0.0833, 0.5)


def test_to_aspect_of_a_point_or_a_pixel_is_the_smallest_4_to_3_box():
    # k is at least 1: a 0 x 0 box becomes 4 x 3, left (4 - 0) // 2 = 2, top (3 - 0) // 2 = 1.
    assert to_aspect((5, 5, 5, 5)) == (3, 4, 7, 7)
    # 1 x 1: k = max(ceil(1/4), ceil(1/3), 1) = 1 -> 4 x 3, left (4 - 1) // 2 = 1, top (3 - 1) // 2 = 1.
    assert to_aspect((5, 5, 6, 6)) == (4, 4, 8, 7)


def test_plan_crop_uses_the_given_enlargement_and_aspect():
    # No enlargement: 100 x 50 stays, landscape; k = max(ceil(100/4) = 25, ceil(50/3) = 17) = 25 -> 100 x 75,
    # top (75 - 50) // 2 = 12.
    assert plan_crop((100, 100, 200, 150), 1024, 768, enlarge=0.0) == CropPlan(rotate=False, box=(100, 88, 200, 163))
    # A square aspect, given as a list (as YAML config gives it): k = max(100, 50) = 100 -> 100 x 100, top 25.
    plan = plan_crop((100, 100, 200, 150), 1024, 768, enlarge=0.0, aspect=[1, 1])
    assert plan == CropPlan(rotate=False, box=(100, 75, 200, 175))


def _numbered_image(height, width):
    """A uint8 image whose every pixel differs from its neighbours (values wrap at 256)."""
    return (np.arange(height * width * 3) % 251).astype(np.uint8).reshape(height, width, 3)


def test_unrotated_crop_is_the_box_with_the_given_pad_colour():
    image = _numbered_image(4, 6)
    pad = (1, 2, 3)
    # Box x -1..3, y -1..2: 3 rows x 4 columns; row 0 and column 0 lie outside, the rest is image[0:2, 0:3].
    crop = apply_crop(image, CropPlan(rotate=False, box=(-1, -1, 3, 2)), pad_color=pad)
    assert crop.shape == (3, 4, 3) and crop.dtype == np.uint8
    assert (crop[0] == pad).all() and (crop[:, 0] == pad).all()
    assert np.array_equal(crop[1:, 1:], image[0:2, 0:3])


def test_rotated_crop_pads_with_the_given_colour():
    image = _numbered_image(4, 6)
    pad = (1, 2, 3)
    turned = np.rot90(image, k=1)  # 6 rows x 4 columns
    # Box x -1..2, y 0..2 in the turned image: column 0 is outside, the rest is turned[0:2, 0:2].
    crop = apply_crop(image, CropPlan(rotate=True, box=(-1, 0, 2, 2)), pad_color=pad)
    assert crop.shape == (2, 3, 3)
    assert (crop[:, 0] == pad).all() and np.array_equal(crop[:, 1:], turned[0:2, 0:2])


def test_a_crop_entirely_outside_is_all_padding_of_the_box_size_and_image_dtype():
    image = np.full((100, 200, 3), 7, np.uint8)
    # Box x 300..340, y 310..330: 20 rows x 40 columns, nothing of the image in it.
    outside = crop_padded(image, (300, 310, 340, 330), pad_color=(9, 8, 7))
    assert outside.shape == (20, 40, 3) and outside.dtype == np.uint8 and (outside == (9, 8, 7)).all()
    # Outside in x only (its rows overlap the image's): still all padding, 30 x 40.
    beside = crop_padded(image, (300, 10, 340, 40))
    assert beside.shape == (30, 40, 3) and (beside == BIOSCAN_PAD_COLOR).all()


def test_a_zero_width_or_zero_height_box_gives_an_empty_crop():
    image = np.full((100, 200, 3), 7, np.uint8)
    # x 5..5 (no column), y -5..10 (15 rows, some outside): 15 x 0.
    assert crop_padded(image, (5, -5, 5, 10)).shape == (15, 0, 3)
    # y 5..5 (no row), x -5..10: 0 x 15.
    assert crop_padded(image, (-5, 5, 10, 5)).shape == (0, 15, 3)


def test_fit_within_scales_by_the_tighter_side_and_keeps_one_pixel():
    # Square 1000 x 1000: min(1024/1000, 768/1000, 1) = 0.768 -> 768 x 768 (the height binds).
    assert fit_within(1000, 1000) == (768, 768)
    # 4000 x 1: scale 1024/4000 = 0.256; the height 0.256 rounds to 0 and is kept at 1 px.
    assert fit_within(4000, 1) == (1024, 1)
    # 1 x 3000: scale 768/3000 = 0.256; the width 0.256 -> 0 -> 1 px, the height 3000 * 0.256 = 768.
    assert fit_within(1, 3000) == (1, 768)


def test_a_one_pixel_short_side_floors_the_long_side():
    # short_side 1 on 3 x 2 (w x h): scale 1/2, long side 3 * 1/2 = 1.5 -> 1: a 1 x 1 result either way round.
    assert resize_short_side(np.zeros((2, 3, 3), np.uint8), short_side=1).shape == (1, 1, 3)
    assert resize_short_side(np.zeros((3, 2, 3), np.uint8), short_side=1).shape == (1, 1, 3)


def test_resize_halves_with_a_box_filter_then_finishes_bilinear():
    # The imager's 2880 x 2160 photo: 2880 / 2 / 2 / 2 = 360 x 270 is the last size still 2x over 341 x 256, so
    # three 2x2 box halvings, then one bilinear step. Built from 8 x 8 blocks of one value, each halving gives back
    # the coarser image exactly, so the result is the bilinear resize of that 360 x 270 image.
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (270, 360, 3), dtype=np.uint8)
    photo = np.kron(small, np.ones((8, 8, 1), np.uint8))
    expected = cv2.resize(small, (341, 256), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(resize_short_side(photo), expected)
    # Portrait 640 wide x 1280 tall -> 256 x 512 (1280 * 256 / 640): one halving to 320 x 640, then bilinear.
    small = rng.integers(0, 256, (640, 320, 3), dtype=np.uint8)
    photo = np.kron(small, np.ones((2, 2, 1), np.uint8))
    expected = cv2.resize(small, (256, 512), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(resize_short_side(photo), expected)


@pytest.mark.parametrize(
    "height,width,size",
    [
        (511, 600, (300, 256)),  # landscape: 600 * 256 / 511 = 300.6 -> 300; the short side 511 is under 2 x 256
        (1000, 511, (256, 500)),  # portrait: 1000 * 256 / 511 = 500.98 -> 500
    ],
)
def test_resize_under_2x_is_one_bilinear_step(height, width, size):
    # Just under 2x on the short side: no box halving, even where the floored long side is exactly halved (600 -> 300).
    image = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert np.array_equal(resize_short_side(image), cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize("height,width", [(512, 1025), (1025, 512)])
def test_resize_exactly_2x_on_the_short_side_box_filters_one_pixel_stripes_to_grey(height, width):
    # Short side 512 = exactly 2 x 256, the long side odd (1025 -> 512, a factor 2.002): the box filter averages
    # each ~2-pixel window of alternating 0/255 stripes (across the long side) to 255 / 2 = 127.5, give or take
    # 255 * 0.002 / 2; point sampling (bilinear at ~2x) would alias them into bands of black and white.
    stripes = (np.indices((height, width))[int(width > height)] % 2 * 255).astype(np.uint8)
    out = resize_short_side(np.dstack([stripes] * 3))
    assert out.shape == ((256, 512, 3) if width > height else (512, 256, 3))
    assert np.abs(out.astype(float) - 127.5).max() <= 1


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (98, 98, (256, 256)),  # a square stays square: 98 * (256 / 98) is 255.99999999999997 in floating point
        (644, 322, (512, 256)),  # 644 * 256 / 322 = 512 exactly (2:1)
        (322, 644, (256, 512)),
        (1024, 768, (341, 256)),  # 1024 * 256 / 768 = 341.33 -> 341, the published 4:3 size
        (1200, 999, (307, 256)),  # 1200 * 256 / 999 = 307.5 -> 307 (floored, not rounded)
    ],
)
def test_resize_short_side_floors_the_exact_long_side(width, height, expected):
    out = resize_short_side(np.zeros((height, width, 3), np.uint8))
    assert (out.shape[1], out.shape[0]) == expected
