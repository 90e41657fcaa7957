"""Crop geometry and size fields exactly as the published BIOSCAN-5M dataset defines them."""

from __future__ import annotations

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
    "box,edge", [((0, 5, 10, 10), True), ((5, 5, 1024, 10), True), ((5, 5, 10, 768), True), ((1, 1, 1023, 767), False)]
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
