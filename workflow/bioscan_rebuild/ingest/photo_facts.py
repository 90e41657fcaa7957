"""A photo file's facts, from its bytes alone: sha256, byte size, format and size from the header, and whether it
is usable (a structural completeness check: the file ends with its format's end marker, JPEG EOI, PNG IEND; one
picture). The inventory caches them per file under a version of this module's code, ``core.pilsafe``'s and
Pillow's (``inventory.facts_version``): what changes them lives there, and in no other module of the inventory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings

from PIL import Image

from bioscan_rebuild.core.pilsafe import PHOTO_FORMATS, error_detail, open_image, several_pictures


def _jpeg_scan_start(data: bytes) -> int:
    """Offset just past the first SOS segment header, walking marker segments from SOI; -1 if none."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return -1
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            return pos + 2 + length
        pos += 2 + length
    return -1


def _png_ends(data: bytes) -> bool:
    """Whether a PNG's chunks, walked from the signature by their lengths, reach an IEND chunk (the bytes "IEND"
    anywhere, e.g. in a text chunk, do not count)."""
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos += 12 + length
    return False


def _complete(data: bytes, image_format: str) -> bool:
    """Whether the file runs to its format's end marker.

    JPEG: an EOI marker after the first scan (entropy data byte-stuffs 0xFF, so FF D9 cannot
    occur inside it); bytes after EOI, as some imager software appends, are tolerated.
    """
    if image_format == "jpeg":
        start = _jpeg_scan_start(data)
        return start > 0 and data.find(b"\xff\xd9", start) >= 0
    if image_format == "png":
        return _png_ends(data)
    return True  # TIFF has no end marker; its strips are checked when decoded


@contextlib.contextmanager
def _header_only():
    """Lift Pillow's pixel cap while only the header is read: no pixels are decoded here, and
    the image stage enforces its own cap before it decodes."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def inspect_image(data: bytes) -> dict:
    """Header facts and a problem code (None when usable) for one file's bytes."""
    facts = {
        "image_sha256": hashlib.sha256(data).hexdigest(),
        "image_bytes": len(data),
        "image_format": None,
        "image_width": None,
        "image_height": None,
        "image_problem": None,
        "image_problem_detail": None,
    }
    if not data:
        facts.update(image_problem="empty_file", image_problem_detail="0 bytes")
        return facts
    try:
        with _header_only(), open_image(io.BytesIO(data)) as image:
            pil_format = image.format
            width, height = image.size
            pictures = several_pictures(image, (pil_format or "unknown").lower())
    except MemoryError:
        raise  # this job's limit, not the file's fault
    except Exception as error:  # Pillow's plugins raise anything on a damaged file (AVIF: RuntimeError)
        facts.update(image_problem="undecodable", image_problem_detail=error_detail(error, "header: "))
        return facts
    image_format = PHOTO_FORMATS.get(pil_format, (pil_format or "unknown").lower())
    facts.update(image_format=image_format, image_width=width, image_height=height)
    if pil_format not in PHOTO_FORMATS:
        facts.update(image_problem="undecodable", image_problem_detail=f"unsupported format {pil_format}")
    elif not _complete(data, image_format):
        facts.update(image_problem="undecodable", image_problem_detail=f"truncated {image_format}: no end marker")
    elif pictures:
        facts.update(image_problem="undecodable", image_problem_detail=pictures)
    return facts
