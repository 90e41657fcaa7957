"""Box geometry shared by the stages that turn photos: the image stage's crops (``images.geometry``) and the
detector's training copies (``detect.yolo.dataset``). Boxes are (x0, y0, x1, y1) in pixels, exclusive ends."""

from __future__ import annotations


def rotate_box_ccw(box, width: int) -> tuple[int, int, int, int]:
    """Remap a box of a `width`-wide image after a 90-degree counter-clockwise rotation (numpy ``rot90(k=1)``)."""
    x0, y0, x1, y1 = box
    return (y0, width - x1, y1, width - x0)
