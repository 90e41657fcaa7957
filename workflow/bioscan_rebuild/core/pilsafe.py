"""Pillow as the image code expects it, whatever other libraries did to it in this process, and its pinned JPEG
writer (generated photos: the sample and the detector's training set).

Importing ultralytics (the yolo backend) replaces ``PIL.Image.open`` with a wrapper that, on an
unidentifiable file, tries to install and import a HEIF plugin (raising ModuleNotFoundError
offline), and sets ``ImageFile.LOAD_TRUNCATED_IMAGES`` so truncated photos decode as grey.
Corrupt photos must get a clear status instead, so the image code opens files through here.
"""

from __future__ import annotations

import io
import re
import sys

import numpy as np
from PIL import Image, PngImagePlugin

# A PNG whose compressed text (XMP with a long edit history) passes Pillow's 1 MB guard is refused whole, although
# its pixels are fine. Raised to Pillow's own cap on all of a file's text (64 MB), which still bounds a text bomb.
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY)


def open_image(fp) -> Image.Image:
    patches = sys.modules.get("ultralytics.utils.patches")
    opener = getattr(patches, "_image_open", None) or Image.open
    return opener(fp)


# The photo formats the pipeline takes: Pillow's format name -> ours (an MPO is a JPEG and its previews).
PHOTO_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "TIFF": "tiff"}


def several_pictures(image: Image.Image, image_format: str) -> str | None:
    """Why a file holding more than one picture cannot stand for one photo (None: it holds one). A multi-page TIFF
    or an animated PNG would pass for its first page, often a thumbnail; an MPO's first picture is the camera's
    main photo (the others are previews), so it is one photo."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and image_format != "mpo":
        return f"{frames} pictures in one {image_format} file (pages or animation frames): which one is the photo?"
    return None


TIFF_TILE_WIDTH, TIFF_TILE_LENGTH = 322, 323


def decoder_pixels(image: Image.Image) -> tuple[int, str] | None:
    """(pixels, what) the decoder inflates at once where that can exceed the picture itself: a tiled TIFF's tile,
    which libtiff allocates whole whatever size the header gives the picture (a 64 x 64 photo in one 26000 x 26000
    deflate tile: about 2 GB from a 2 MB file). None for every other file."""
    if image.format != "TIFF":
        return None
    tags = getattr(image, "tag_v2", None) or {}
    width, length = tags.get(TIFF_TILE_WIDTH), tags.get(TIFF_TILE_LENGTH)
    if not width or not length:
        return None
    return int(width) * int(length), f"TIFF tiles of {int(width)}x{int(length)}"


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """Encode an (H, W, 3) uint8 RGB array as baseline JPEG bytes.

    Pillow writes only a JFIF header (no EXIF, no timestamps), and the settings
    are pinned, so the same pixels always give the same bytes.
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(
        buf,
        format="JPEG",
        quality=int(quality),
        subsampling="4:2:0",
        optimize=False,
        progressive=False,
    )
    return buf.getvalue()


# A decoder's message may name the in-memory buffer it read ("<_io.BytesIO object at 0x7f...>"): an address
# that differs run to run, which would make reject tables, and every file that hashes them, irreproducible.
_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def error_detail(error: BaseException, prefix: str = "", limit: int = 300) -> str:
    """A decoder error as a reproducible reject detail: without object reprs, cut to ``limit`` characters."""
    return f"{prefix}{_OBJECT_REPR.sub('', str(error))}"[:limit]
