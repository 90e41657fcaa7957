"""Image stage: photo -> detection, BIOSCAN-5M crops, the four image packages and size fields.

Per photo (decoded once):
1. Safety first, from the header alone: empty files, images below ``min_side`` or above
   ``max_pixels`` get a status and are never decoded (decompression bombs cannot exhaust memory).
2. Decode to ``original_full`` (the source fitted into 1024x768; JPEGs larger than that are
   decoded with DCT-domain reduction, which is much cheaper than decode-then-resize). EXIF
   orientation is applied; grayscale, CMYK, palette and 16-bit images become 8-bit RGB; PNG or
   TIFF files named ``.jpg`` are decoded by content. A JPEG whose scan data is corrupt behind intact
   markers (the decoder only warns) is ``undecodable``, never decoded to garbage.
3. Detect on ``original_full`` (backend from the config); organism pixels are counted at that
   resolution (``image_measurement_value``).
4. Crop with the published geometry (``geometry.py``) and encode ``original_full``,
   ``original_256``, ``cropped``, ``cropped_256``. When the source already is a JPEG of
   ``original_full`` size needing no rotation, its bytes are reused as ``original_full``.

Statuses: ``ok``; ``touches_edge`` and ``multiple_candidates`` (cropped, but a person may want
to look); ``no_object`` (empty well: originals only, no crop); ``empty_file``, ``undecodable``,
``too_small``, ``too_large`` (nothing derived); ``source_changed`` (the photo's bytes are gone or no longer
hash to the sha256 its inventory recorded: changed after ingest; never cached, so a run after the batch is
ingested again tries again). Each record gets one; a bad photo never stops its shard.

Derived images and the per-photo result go to the content-addressed store under
``derived/{key}/``, key = hash of every parameter and the detector's own parameters (model hash
included), so a re-run skips photos already processed with the same settings.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageCms, ImageFile, ImageOps

from bioscan_rebuild.core.params import ImageParams
from bioscan_rebuild.core.pilsafe import PHOTO_FORMATS, decoder_pixels, error_detail, open_image, several_pictures
from bioscan_rebuild.core.store import (
    ImageStore,
    file_fingerprint,
    file_sha256,
    params_key,
    seal,
    unseal,
    whole_jpeg,
)
from bioscan_rebuild.detect.base import Detection
from bioscan_rebuild.images.geometry import (
    apply_crop,
    fit_within,
    plan_crop,
    resize_short_side,
    size_fields,
    touches_edge,
)

# 2: sharpness from an int16 Laplacian (float rounding differs from 1). 3: review reasons, box source.
# 4: TIFFs turned by EXIF kept upright; original_256 of an odd-sided photo sized from the photo; strict MPO decode.
# 5: an RGB photo with a colour profile other than sRGB converted to sRGB; grey photos flagged for review; the
# source is original_full only when it is a baseline/progressive Huffman JPEG with no image glued on after it.
# 6: a 32-bit grey image's white level is the smallest 2^k - 1 holding its peak (a peak of 256 gave black); a file of
# several pictures (multi-page TIFF, animated PNG) is undecodable, not its first page.
# 7: a colour profile is sRGB by what it does, not by a name holding "sRGB"; a 16-bit min-is-white TIFF not a negative;
# a box holding no organism pixel is flagged no_organism_pixels.
# (touches_edge from a detector's box_on_rim changed only the fusion's results: detect.fusion VERSION fusion-3)
STAGE_VERSION = 7
# The strict JPEG check, versioned apart from STAGE_VERSION (which would re-process every photo): a stored
# ``undecodable`` result of an older check is judged again. 1: header fields libjpeg warns on and ignores are mended.
# 2: zero bytes padding a scan before a marker are taken off.
DECODE_CHECK = 2

# Photos handed to process_photos at once: one detector call, bounded memory.
PHOTO_BATCH = 32


@dataclass
class Decoded:
    status: str
    detail: str | None = None
    rgb: np.ndarray | None = None  # original_full, RGB uint8
    source_size: tuple[int, int] | None = None  # (width, height) after EXIF orientation
    source_format: str | None = None
    reuse_source: bool = False  # the source bytes already are original_full
    grey: bool = False  # the source holds no colour (the detectors rely on colour)


@dataclass
class PhotoResult:
    status: str
    detail: str | None = None
    source_width: int | None = None
    source_height: int | None = None
    width_original: int | None = None  # original_full size
    height_original: int | None = None
    box: list[int] | None = None  # tight box in original_full pixels
    crop_rotated: bool | None = None
    crop_box: list[int] | None = None  # 4:3 box in the (rotated, if crop_rotated) original_full
    image_measurement_value: int | None = None
    area_fraction: float | None = None
    scale_factor: float | None = None
    sharpness: float | None = None
    detector_score: float | None = None
    candidates: int | None = None
    sha256: dict[str, str] = field(default_factory=dict)  # package -> sha256 of its JPEG
    original_full_is_source: bool = False
    review: list[str] = field(default_factory=list)  # why a person should look (REVIEW_REASONS), [] = no need
    box_source: str = "detector"  # or "correction": a maintainer's box (images.box_corrections)
    decode_check: int = DECODE_CHECK  # the strict decode that judged the photo (absent: stored before DECODE_CHECK 1)


def _white_level(mode: str, peak: float) -> float:
    """The value shown as white for a grey image of ``mode`` whose brightest pixel is ``peak``: 65535 for 16-bit
    modes; for 32-bit ones (which say nothing of their range) 1 for a float image in 0..1 (scientific TIFFs), 255
    for 8-bit values, else the smallest 2^k - 1 that holds the peak (10-, 12-, 16-bit data): one bright pixel
    more never turns a photo black (a peak of 256 used to scale by 65535), at most half as bright."""
    if mode.startswith("I;16"):
        return 65535.0
    if mode == "F" and peak <= 1.0:
        return 1.0
    if peak <= 255:
        return 255.0
    return float(2 ** math.ceil(math.log2(peak + 1)) - 1)


def _finite_peak(array: np.ndarray) -> float:
    """The brightest finite value (0 for none), one block of rows at a time (no whole-photo copy)."""
    peak = 0.0
    for top in range(0, array.shape[0], 256):
        block = array[top : top + 256]
        if block.dtype.kind == "f":
            block = block[np.isfinite(block)]
        if block.size:
            peak = max(peak, float(block.max()))
    return peak


def _to_rgb8(image: Image.Image, inverted: bool = False) -> np.ndarray:
    """8-bit RGB pixels of a decoded picture. ``inverted``: its file stores 0 as white (a min-is-white TIFF), which
    Pillow undoes for 1- and 8-bit pictures but not for 16-bit or float ones (they were released as negatives)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # in blocks of rows: a 100-Mpixel 16-bit photo took 27 bytes a pixel in whole-photo float64 copies
        array = np.asarray(image)
        white = _white_level(image.mode, _finite_peak(array))
        gray = np.empty(array.shape, np.uint8)
        for top in range(0, array.shape[0], 256):
            block = array[top : top + 256]
            if block.dtype.kind == "f":  # NaN black, infinities clipped
                gray[top : top + 256] = np.clip(
                    np.nan_to_num(block.astype(np.float64), nan=0.0, posinf=white, neginf=0.0) / white * 255 + 0.5,
                    0,
                    255,
                )
            else:  # round(v / white x 255) in integers (white is odd: no ties)
                level = int(white)
                block = np.clip(block.astype(np.int64), 0, level)
                gray[top : top + 256] = (block * 255 + (level - 1) // 2) // level
            if inverted:
                gray[top : top + 256] = 255 - gray[top : top + 256]
            key = image.info.get("transparency")
            if isinstance(key, int):  # a 16-bit grey PNG's colour key: transparent, on white as alpha is
                gray[top : top + 256][array[top : top + 256] == key] = 255
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    # a colour key (PNG tRNS on a palette, grey or RGB photo) is transparency too: the key colour showed
    if image.mode in ("RGBA", "LA", "PA") or (image.mode in ("P", "L", "RGB") and "transparency" in image.info):
        # Transparent pixels would turn black; show them on white, like a viewer does. In bands of rows: three
        # whole-photo RGBA copies took 14 bytes a pixel.
        rgb = np.empty((image.height, image.width, 3), np.uint8)
        for top in range(0, image.height, 256):
            band = image.crop((0, top, image.width, min(image.height, top + 256))).convert("RGBA")
            background = Image.new("RGBA", band.size, (255, 255, 255, 255))
            rgb[top : top + band.height] = np.asarray(Image.alpha_composite(background, band).convert("RGB"))
        return rgb
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


# EXIF orientation -> the transpose Pillow's ImageOps.exif_transpose applies for it.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _draft_scale(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The DCT reduction Pillow's ``draft`` picks: the largest of 8, 4, 2, 1 not below the size ratio."""
    ratio = min(size[0] // target[0], size[1] // target[1])
    return next(scale for scale in (8, 4, 2, 1) if ratio >= scale)


# libjpeg warnings about a header field the decoder then ignores: the pixels are the same as without it
_HEADER_WARNINGS = ("unknown JFIF revision", "Invalid SOS parameters for sequential JPEG", "bad ICC marker")
# Zero bytes an encoder or tool padded a scan with before the next marker: "N extraneous bytes before marker".
# Only zeros are taken off (other bytes there may be damage), and the check runs again on the result.
_PADDING_WARNING = r"(\d+) extraneous bytes before marker 0x([0-9a-f]{2})"
_SEQUENTIAL_FRAMES = {0xC0, 0xC1, 0xC9}  # baseline, extended (Huffman), extended (arithmetic)


def _header_warnings_mended(data: bytes) -> bytes | None:
    """The JPEG with the header fields those warnings name set as the decoder reads them anyway (JFIF version
    1.02, each sequential scan's progression fields 0/63/0, no ICC segments: the profile is read by Pillow); None
    when its markers cannot be walked. The entropy-coded data is copied as it is."""
    if data[:2] != b"\xff\xd8":
        return None
    out, at, sequential = bytearray(data[:2]), 2, False
    while at + 2 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            out.append(0xFF)
            at += 1
            continue
        if marker == 0xD9:  # end of image: what follows (an MPO's other pictures) as it is
            return bytes(out) + data[at:]
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        segment = bytearray(data[at : at + 2 + length])
        if length < 2 or len(segment) != 2 + length:
            return None
        payload = segment[4:]
        if marker in _SEQUENTIAL_FRAMES:
            sequential = True
        if marker == 0xE0 and payload[:5] == b"JFIF\x00" and len(payload) >= 7:
            segment[9:11] = b"\x01\x02"
        elif marker == 0xE2 and payload[:12] == b"ICC_PROFILE\x00":
            segment = bytearray()
        elif marker == 0xDA and sequential and len(segment) >= 7:
            segment[-3:] = b"\x00\x3f\x00"
        out += segment
        at += 2 + length
        if marker == 0xDA:  # a scan's entropy-coded data, up to the next marker
            end = _entropy_end(data, at)
            out += data[at:end]
            at = end
    return None


def _entropy_end(data: bytes, at: int) -> int:
    """Where the entropy-coded data from ``at`` ends: at the next marker that is neither a stuffed 0xFF00 nor a
    restart marker (or at the file's end)."""
    while True:
        at = data.find(b"\xff", at)
        if at < 0 or at + 1 >= len(data):
            return len(data)
        if data[at + 1] == 0x00 or 0xD0 <= data[at + 1] <= 0xD7:
            at += 2
            continue
        return at


def _decode_jpeg_strict(data: bytes, size: tuple[int, int], target: tuple[int, int], mode: str) -> np.ndarray:
    """A JPEG's pixels through libjpeg-turbo with every decoder warning an error (simplejpeg, strict).

    Pillow and OpenCV only warn on corrupt entropy-coded data and return garbage pixels; a photo whose
    markers are intact but whose scan data is damaged must be ``undecodable`` instead. A warning about a
    header field the decoder ignores (JFIF revision, a sequential scan's progression fields, an ICC segment's
    numbering) is not damage: the check runs again with those fields mended, so the scan is still checked.
    RGB photos are decoded at Pillow's draft scale (the same pixels as ``draft`` + ``load``); other modes (grey,
    CMYK) are only checked here, at 1/8 scale, and decoded by Pillow. Raises ValueError on a warning.
    """
    try:
        return _decode_jpeg_checked(data, size, target, mode)
    except ValueError as error:
        warning = str(error)
    if any(words in warning for words in _HEADER_WARNINGS):
        data = _header_warnings_mended(data)
        if data is None:
            raise ValueError(warning)
        try:
            return _decode_jpeg_checked(data, size, target, mode)
        except ValueError as again:  # zero padding is said only once the header is mended
            warning = str(again)
    decoded = _unpadded(data, warning, size, target, mode, [MAX_PADDING_DECODES])
    if decoded is None:
        raise ValueError(warning)
    return decoded[0]


MAX_PADDING_TRIES = 16  # places a padding of that size before that marker is taken off from, one at a time
MAX_PADDING_DECODES = 64  # decodes the search for paddings may spend on one photo (a progressive one has ~10 scans)


def _unpadded(data: bytes, warning: str, size, target, mode: str, budget: list[int]) -> tuple | None:
    """(pixels,) of the JPEG with its zero paddings taken off, or None. The warning names the first padding's size
    and marker, not its place: each place holding such zeros is tried on these bytes first (zeros that were scan
    data leave the scan short, and the check fails), then, where taking one off leaves a padding said further on
    (a tool that pads one scan pads them all, and the end), the search goes on from there; ``budget``: decodes."""
    found = re.search(_PADDING_WARNING, warning)
    if found is None:
        return None
    further = []
    for unpadded in _without_zero_padding(data, int(found.group(1)), int(found.group(2), 16)):
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        try:
            return (_decode_jpeg_checked(unpadded, size, target, mode),)
        except ValueError as again:
            if re.search(_PADDING_WARNING, str(again)):
                further.append((unpadded, str(again)))
    for unpadded, again in further:
        decoded = _unpadded(unpadded, again, size, target, mode, budget)
        if decoded is not None:
            return decoded
    return None


def _without_zero_padding(data: bytes, count: int, marker: int):
    """The JPEG without ``count`` zero bytes before one ``marker`` (the warning names both), for each place such
    zeros stand, last first (the end marker's padding is the common case). Each is checked again: zeros that were
    scan data leave the scan short, and that check fails."""
    code, zeros = bytes([0xFF, marker]), b"\x00" * count
    at, tried = len(data), 0
    while tried < MAX_PADDING_TRIES:
        at = data.rfind(code, 0, at)
        if at < count:
            return
        if data[at - count : at] == zeros:
            tried += 1
            yield data[: at - count] + data[at:]


def _decode_jpeg_checked(data: bytes, size: tuple[int, int], target: tuple[int, int], mode: str) -> np.ndarray:
    if mode != "RGB":
        # min_factor alone does not reduce: the decoder keeps the full size unless told a smaller one will do
        colorspace = "CMYK" if mode == "CMYK" else "GRAY"
        simplejpeg.decode_jpeg(data, colorspace=colorspace, min_width=1, min_height=1, min_factor=8, strict=True)
        return None
    scale = _draft_scale(size, target)
    width, height = -(-size[0] // scale), -(-size[1] // scale)
    return simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=width, min_height=height, strict=True)


def _to_srgb(rgb: np.ndarray, icc: bytes | None) -> tuple[np.ndarray, bool]:
    """RGB pixels in the photo's embedded colour profile -> sRGB (relative colorimetric, LittleCMS), and whether
    they changed. Without a profile, with an sRGB one, or with one LittleCMS cannot read (as a viewer ignores it):
    the pixels as they are."""
    if not icc:
        return rgb, False
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        # the profile of an RGB picture (a grey or CMYK one describes pixels already turned to RGB here)
        if profile.profile.xcolor_space.strip() != "RGB":
            return rgb, False
        if _converts_as_srgb(icc):
            return rgb, False
        converted = ImageCms.profileToProfile(
            Image.fromarray(rgb),
            profile,
            ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            outputMode="RGB",
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return rgb, False
    return np.asarray(converted), True


# Every colour of a 17-level grid: what a profile must leave as it is to be sRGB
_PROBE = np.stack(np.meshgrid(*[np.linspace(0, 255, 17).round().astype(np.uint8)] * 3, indexing="ij"), axis=-1).reshape(
    1, -1, 3
)


@functools.lru_cache(maxsize=64)
def _converts_as_srgb(icc: bytes) -> bool:
    """Whether an RGB profile is sRGB by what it does: converting the probe colours through it to sRGB moves none by
    more than 2 of 255 levels (the spread between sRGB profiles' curves). By its name it is not: GIMP's "Linear
    sRGB" has sRGB's primaries and another tone curve (its photos were released a third too dark)."""
    converted = ImageCms.profileToProfile(
        Image.fromarray(_PROBE),
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        outputMode="RGB",
    )
    return int(np.abs(np.asarray(converted, np.int16) - _PROBE).max()) <= 2


# Start-of-frame markers of Huffman-coded baseline, extended and progressive JPEGs: what every viewer opens.
# (Arithmetic coding, SOF9-SOF11, and lossless frames are decoded here but not copied out as original_full.)
_PLAIN_FRAMES = frozenset({0xC0, 0xC1, 0xC2})


# A marker in or after entropy-coded data: 0xFF then a code (0x00 is a stuffed byte, 0xD0-0xD7 restarts)
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _plain_jpeg(data: bytes) -> bool:
    """A JPEG whose bytes can stand as ``original_full``: a baseline/progressive Huffman frame, and no second image
    glued on after its end marker. (A trailer that is not an image stays: the imager's own metadata, e.g. the
    Keyence VHX block after the BIOSCAN originals' end marker.)"""
    frame, pos = None, 2
    while True:  # the headers, up to the first scan
        if pos + 4 > len(data) or data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frame = marker
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            break
    if frame not in _PLAIN_FRAMES:
        return False
    # the scans' data, and tables or further scans between them, up to the end marker
    while (found := _MARKER.search(data, pos)) is not None:
        marker = data[found.start() + 1]
        if marker == 0xD9:
            return not data[found.end() :].lstrip(b"\x00").startswith(b"\xff\xd8")
        if marker == 0xD8:
            return False
        pos = found.start() + 2 + int.from_bytes(data[found.start() + 2 : found.start() + 4], "big")
    return False


# JPEG's largest side (libjpeg): original_256 of a very long, thin photo would pass it and fail to encode
JPEG_MAX_SIDE = 65500


def _too_narrow(target: tuple[int, int], params: ImageParams) -> str | None:
    """Why a photo whose ``original_full`` is ``target`` cannot give the packages (None: it can)."""
    short, long = min(target), max(target)
    if short < params.min_side:
        return f"its original_full would be {target[0]}x{target[1]}, shorter side below {params.min_side} px"
    if long * params.short_side // short > JPEG_MAX_SIDE:
        return f"too long and thin: its {params.short_side}-px package would pass JPEG's {JPEG_MAX_SIDE} px"
    return None


def decode_photo(data: bytes, params: ImageParams) -> Decoded:
    """Bytes -> original_full RGB, or a status saying why not."""
    if not data:
        return Decoded("empty_file", "0 bytes")
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS = None  # our own cap below is checked before any pixel is decoded
    # A truncated photo must fail, even where another library (ultralytics does) has told
    # Pillow to fill missing data with grey.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = open_image(io.BytesIO(data))
            width, height = image.size
            source_format = (image.format or "unknown").lower()
            icc = image.info.get("icc_profile")
            if width * height > params.max_pixels:
                return Decoded(
                    "too_large", f"{width}x{height} > {params.max_pixels} pixels", source_format=source_format
                )
            inflated = decoder_pixels(image)  # the cap bounds memory only if it bounds what is decoded at once
            if inflated and inflated[0] > params.max_pixels:
                return Decoded(
                    "too_large",
                    f"{inflated[1]} > {params.max_pixels} pixels ({width}x{height} photo)",
                    source_format=source_format,
                )
            if image.format not in PHOTO_FORMATS:  # as the inventory refuses it (the detect command has none)
                return Decoded("undecodable", f"unsupported format {image.format}", source_format=source_format)
            if pictures := several_pictures(image, source_format):
                return Decoded("undecodable", pictures, source_format=source_format)
            orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
            turned = orientation in (5, 6, 7, 8)
            upright = (height, width) if turned else (width, height)
            if min(upright) < params.min_side:
                return Decoded(
                    "too_small", f"{upright[0]}x{upright[1]} < {params.min_side} px", source_format=source_format
                )
            if source_format == "tiff":
                # Pillow reports a TIFF's size upright already and turns its pixels itself when loading
                turned, upright = False, (width, height)
            target = fit_within(*upright, *params.original_full_size)
            if problem := _too_narrow(target, params):
                return Decoded("too_small", f"{upright[0]}x{upright[1]} px: {problem}", source_format=source_format)
            stored_target = (target[1], target[0]) if turned else target
            rgb = None
            if source_format in ("jpeg", "mpo"):  # an MPO's first picture is a JPEG (the camera's main photo)
                rgb = _decode_jpeg_strict(data, (width, height), stored_target, image.mode)
            if rgb is None:
                if source_format in ("jpeg", "mpo"):
                    # DCT-domain reduction: decode at the smallest 1/2^k scale still >= target.
                    image.draft("RGB", stored_target)
                image.load()
                min_is_white = source_format == "tiff" and image.tag_v2.get(262) == 0
                if orientation not in (1, None):
                    image = ImageOps.exif_transpose(image)
                rgb = _to_rgb8(image, inverted=min_is_white)
            elif orientation in _ORIENTATION_TRANSPOSE:
                rgb = np.asarray(Image.fromarray(rgb).transpose(_ORIENTATION_TRANSPOSE[orientation]))
    except MemoryError:
        raise  # this job's limit, not the photo's fault: the job fails and is run again
    except Exception as error:  # a damaged file makes Pillow's plugins raise anything (RuntimeError...)
        return Decoded("undecodable", error_detail(error, f"{type(error).__name__}: "))
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved
    rgb, converted = _to_srgb(rgb, icc)
    # a photo without colour (a grey mode, a palette of greys, or grey pixels saved as RGB): its channels are
    # equal, up to JPEG's rounding; every 8th pixel tells
    sample = rgb[::8, ::8].astype(np.int16)
    grey = bool(np.abs(np.diff(sample, axis=2)).max(initial=0) <= 2)
    if (rgb.shape[1], rgb.shape[0]) != target:
        rgb = cv2.resize(rgb, target, interpolation=cv2.INTER_AREA)
    reuse = (
        source_format == "jpeg"
        and orientation in (1, None)
        and upright == target
        and image.mode == "RGB"
        and not converted
        and _plain_jpeg(data)
    )
    return Decoded("ok", rgb=rgb, source_size=upright, source_format=source_format, reuse_source=reuse, grey=grey)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buffer.tobytes()


def sharpness(rgb: np.ndarray, box) -> float:
    """Variance of the Laplacian of the grey image inside the tight box (higher = sharper)."""
    x0, y0, x1, y1 = box
    inside = rgb[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]
    if inside.size == 0:  # a box outside the photo (OpenCV raised on the empty crop, failing the whole shard)
        return 0.0
    gray = cv2.cvtColor(np.ascontiguousarray(inside), cv2.COLOR_RGB2GRAY)
    # The 3x3 Laplacian of 8-bit pixels fits int16 exactly; meanStdDev accumulates in float64.
    _, std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_16S))
    return round(float(std[0, 0]) ** 2, 2)


def halve(rgb: np.ndarray) -> np.ndarray:
    """The photo reduced 2x with a 2x2 box filter: shared by the detector and ``original_256``."""
    return cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)


# Why a photo needs a person's eye (images.parquet ``review_reason``): the detector's own reasons (the fusion
# backend knows when it is unsure or its two detectors disagree) plus what any box shows.
REVIEW_REASONS = (
    "low_confidence",
    "backends_disagree",
    "several_specimens",
    "box_on_rim",
    "grey_photo",
    "no_organism_pixels",
)


def review_reasons(detection, box, width: int, height: int, grey: bool = False, pixels=None) -> list[str]:
    """The reasons, in REVIEW_REASONS order: the detector's, several candidates, a box on the rim (the border),
    a photo without colour (the detectors score colour contrast: a grey specimen is easily missed), a box in
    which the segmentation finds no pixel of an organism (``pixels`` 0: a box on a black frame or on noise)."""
    reasons = set(getattr(detection, "review", ()) or ())
    if grey:
        reasons.add("grey_photo")
    if box is not None and pixels == 0:
        reasons.add("no_organism_pixels")
    if detection.status == "multiple_candidates":
        reasons.add("several_specimens")
    if box is not None and touches_edge(box, width, height):
        reasons.add("box_on_rim")
    return [reason for reason in REVIEW_REASONS if reason in reasons]


def finish_photo(data: bytes, decoded: Decoded, detection, params: ImageParams, segmenter=None, half=None):
    """Detection -> PhotoResult and the derived JPEGs (package -> bytes). ``half``: ``halve(decoded.rgb)``
    when the caller has it (the first step of the 256-px reduction)."""
    if decoded.status != "ok":
        return PhotoResult(status=decoded.status, detail=decoded.detail), {}
    rgb = decoded.rgb
    height, width = rgb.shape[:2]
    result = PhotoResult(
        status="ok",
        source_width=decoded.source_size[0],
        source_height=decoded.source_size[1],
        width_original=width,
        height_original=height,
        original_full_is_source=decoded.reuse_source,
    )
    images = {"original_full": data if decoded.reuse_source else encode_jpeg(rgb, params.jpeg_quality)}
    # resize_short_side halves first while more than 2x remains, so starting from ``half`` is the same.
    small = half if half is not None and min(half.shape[:2]) >= params.short_side else rgb
    original_256 = resize_short_side(small, params.short_side, of=rgb.shape[:2])
    images["original_256"] = encode_jpeg(original_256, params.jpeg_quality)
    result.detector_score = round(float(detection.score), 4)
    result.candidates = int(detection.candidates)
    if detection.status == "no_object" or detection.box is None:
        result.status = "no_object"
        result.review = review_reasons(detection, None, width, height, decoded.grey)
    else:
        box = tuple(int(v) for v in detection.box)
        pixels = detection.pixel_count
        if pixels is None and segmenter is not None:
            pixels = int(segmenter.segment_in_box(rgb, box).sum())
        plan = plan_crop(box, width, height, params.enlarge, params.aspect)
        cropped = apply_crop(rgb, plan, params.pad_color)
        images["cropped"] = encode_jpeg(cropped, params.jpeg_quality)
        images["cropped_256"] = encode_jpeg(resize_short_side(cropped, params.short_side), params.jpeg_quality)
        result.box = list(box)
        result.crop_rotated = plan.rotate
        result.crop_box = list(plan.box)
        result.image_measurement_value = None if pixels is None else int(pixels)
        result.area_fraction, result.scale_factor = size_fields(box, width, height, params.short_side)
        result.sharpness = sharpness(rgb, box)
        result.review = review_reasons(detection, box, width, height, decoded.grey, pixels)
        if detection.status == "multiple_candidates":
            result.status = "multiple_candidates"
        elif "box_on_rim" in result.review:
            # the box touches the border, or (a learned box, or the mean of two, stops a pixel or two short of a
            # specimen the border cuts) the detector that knows its margin says it is on the rim
            result.status = "touches_edge"
    result.sha256 = {name: hashlib.sha256(blob).hexdigest() for name, blob in images.items()}
    return result, images


def keep_freed_memory(threshold: int = 64 << 20) -> bool:
    """Let this process re-use the memory of freed photo buffers instead of handing it back to the OS.

    Every photo allocates a few arrays of some MB. By default glibc maps each one afresh (mmap) and
    unmaps it on free, so each photo pays page faults for all of its memory again: copying a decoded
    1024x768 photo into numpy took 3 ms instead of 0.5 ms, more than the JPEG decode itself. Raising
    glibc's mmap and trim thresholds keeps up to ``threshold`` bytes per buffer on the heap. Called once
    by the image-stage commands; a no-op (False) where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, threshold)) and bool(mallopt(m_trim_threshold, 4 * threshold))


def process_photos(datas: list[bytes], detector, params: ImageParams, segmenter=None, stored=None, shas=None):
    """Several photos through decode -> (batched) detection -> crops. Returns [(result, images)]. ``stored``: a
    :class:`DetectionStore` of the detections already made with this detector and decode (``shas``: the photos'
    sha256, in order): those photos are not detected again, and new detections are stored."""
    decoded = [decode_photo(data, params) for data in datas]
    usable = [i for i, d in enumerate(decoded) if d.status == "ok"]
    halves = {i: halve(decoded[i].rgb) for i in usable}
    detections = {}
    if stored is not None:
        detections = {i: found for i in usable if (found := stored.load(shas[i])) is not None}
    todo = [i for i in usable if i not in detections]
    found = detector.detect_batch([decoded[i].rgb for i in todo], [halves[i] for i in todo]) if todo else []
    for i, detection in zip(todo, found, strict=True):
        detections[i] = detection
        if stored is not None:
            stored.save(shas[i], detection)
    return [
        finish_photo(data, d, detections.get(i), params, segmenter, halves.get(i))
        for i, (data, d) in enumerate(zip(datas, decoded))
    ]


def process_corrected(datas: list[bytes], boxes: list, params: ImageParams, segmenter):
    """Photos whose box a maintainer gave (``images.corrections``; None = empty well): no detection. A box is
    clipped to the photo; one left empty by that is not applied (``box_source`` stays ``detector`` and the
    caller falls back to detection). Returns [(result, images)] like ``process_photos``."""
    out = []
    for data, box in zip(datas, boxes, strict=True):
        decoded = decode_photo(data, params)
        if decoded.status != "ok":
            out.append(finish_photo(data, decoded, None, params))
            continue
        height, width = decoded.rgb.shape[:2]
        if box is None:
            detection = Detection("no_object", None, score=1.0)
        else:
            x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3])
            if x1 <= x0 or y1 <= y0:
                out.append((None, {}))
                continue
            detection = Detection("ok", (x0, y0, x1, y1), score=1.0, candidates=1)
        result, images = finish_photo(data, decoded, detection, params, segmenter)
        result.box_source, result.review = "correction", []  # a person has looked
        out.append((result, images))
    return out


def stage_key(params: ImageParams, detector, segmenter=None) -> str:
    """The store key of a photo's results: everything that changes them. ``segmenter``: the classical detector
    that counts a box-only backend's organism pixels (a change to it changes ``image_measurement_value``)."""
    facts = {"stage_version": STAGE_VERSION, "image": params.as_dict(), "detector": detector.params()}
    if segmenter is not None:
        facts["segmenter"] = segmenter.params()
    return params_key(facts)


def detection_key(params: ImageParams, detector) -> str:
    """The store key of a photo's detection: the detector and what its input depends on (the decode's target size
    and the stage's code), not the crop, size or JPEG settings: a change to those redoes the crops alone (every
    photo was detected again: at 5.15M photos, tens of core-hours for the same boxes)."""
    facts = {"stage_version": STAGE_VERSION, "decode": list(params.original_full_size), "detector": detector.params()}
    return params_key(facts)


class DetectionStore:
    """Detections in the content-addressed store (``ImageStore.detection_path``), one small JSON per photo."""

    def __init__(self, store: ImageStore, key: str):
        self.store, self.key = store, key

    def load(self, sha: str) -> Detection | None:
        """The stored detection, or None (none stored, or a damaged file, removed: the photo is detected again and
        the file written afresh, which put_bytes would not do over a file of the same size)."""
        path = self.store.detection_path(self.key, sha)
        try:
            stored, sealed = unseal(path.read_bytes())
            if not sealed:  # an older version's file, trusted as before: sealed now
                self.store.replace_bytes(path, seal(stored))
            return Detection(
                stored["status"],
                None if stored["box"] is None else tuple(int(v) for v in stored["box"]),
                pixel_count=stored["pixel_count"],
                score=float(stored["score"]),
                candidates=int(stored["candidates"]),
                review=tuple(stored["review"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            return None

    def save(self, sha: str, detection: Detection) -> None:
        facts = {
            "status": detection.status,
            "box": None if detection.box is None else [int(v) for v in detection.box],
            "pixel_count": None if detection.pixel_count is None else int(detection.pixel_count),
            "score": float(detection.score),
            "candidates": int(detection.candidates),
            "review": list(detection.review or ()),
        }
        self.store.put_bytes(self.store.detection_path(self.key, sha), seal(facts))


class DerivedStore:
    """The image stage's view of the content-addressed store: one JSON result + JPEGs per photo."""

    def __init__(self, store: ImageStore, key: str):
        self.store, self.key = store, key

    def result_path(self, sha: str) -> Path:
        return self.store.derived_result_path(self.key, sha)

    def image_path(self, sha: str, package: str) -> Path:
        return self.store.derived_image_path(self.key, sha, package)

    def load(self, sha: str) -> PhotoResult | None:
        """The stored result, or None when there is none, its bytes changed after it was written (its seal), or one
        of its JPEGs is gone from the store (deleted, or a disk cleaned up), cut short (an interrupted copy of the
        store) or changed: the photo is then processed again, as a re-run is expected to repair. A JPEG whose size
        or modification time is not the one the result recorded is hashed: its bytes decide."""
        path = self.result_path(sha)
        try:
            stored, sealed = unseal(path.read_bytes())
            if not isinstance(stored.get("status"), str):
                raise ValueError("not a photo result")
        except FileNotFoundError:
            return None
        except ValueError:
            # cut short, emptied (a store copied onto a full disk) or changed: processed again and written afresh,
            # which put_bytes would not do over a file of the same size
            path.unlink(missing_ok=True)
            return None
        files = stored.pop("files", None)
        if stored["status"] == "undecodable" and stored.get("decode_check", 0) < DECODE_CHECK:
            return None  # judged by an older strict check (the key is the same): judged again
        try:
            result = PhotoResult(**stored)
        except TypeError:  # whole, but with fields this code does not know: not damage; processed again and written
            return None
        checked = {}
        for package, digest in result.sha256.items():
            source = package == "original_full" and result.original_full_is_source
            image = self._stored_image(sha, package, result)
            if source:
                # linked to a delivery rewritten in place since the result was stored, it is no longer this photo
                if self.store.original_damaged(sha, "jpeg", since_ns=path.stat().st_mtime_ns):
                    return None
            elif not whole_jpeg(image):  # gone, or damaged at its end: made again
                image.unlink(missing_ok=True)  # a damaged file of the right size would be kept by put_bytes
                return None
            fingerprint = file_fingerprint(image)
            if fingerprint is None:  # an original the store does not hold (image_store.mode none): no damage
                continue
            changed = sealed and (files or {}).get(package) != fingerprint
            if changed and file_sha256(image) != (sha if source else digest):
                if not source:  # (a stored original is repaired from its delivery by the photo job)
                    image.unlink(missing_ok=True)
                return None
            checked[package] = fingerprint
        if not sealed or files != checked:  # an older version's result, or a JPEG hashed again: sealed as it is now
            self._write_result(sha, result, checked)
        return result

    def _stored_image(self, sha: str, package: str, result: PhotoResult) -> Path:
        """Where the store holds a package's JPEG; for the original as delivered, the stored original."""
        if package == "original_full" and result.original_full_is_source:
            return self.store.original_path(sha, "jpeg")
        return self.image_path(sha, package)

    def _write_result(self, sha: str, result: PhotoResult, files: dict) -> None:
        """The result, sealed, with the size and modification time of each JPEG it names as the store holds them."""
        self.store.replace_bytes(self.result_path(sha), seal({**asdict(result), "files": files}))

    def save(self, sha: str, result: PhotoResult, images: dict[str, bytes]) -> None:
        for package, blob in images.items():
            if package == "original_full" and result.original_full_is_source:
                continue  # the original in the store is this image already
            self.store.put_bytes(self.image_path(sha, package), blob)
        files = {}
        for package in result.sha256:
            if (fingerprint := file_fingerprint(self._stored_image(sha, package, result))) is not None:
                files[package] = fingerprint
        # The result is written last: its presence means the photo is complete.
        self._write_result(sha, result, files)
