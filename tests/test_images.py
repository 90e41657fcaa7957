"""Image stage mechanics: decoding every kind of bad input, crops, packages, the derived store.

Detection quality is tested in test_detect_classical.py; here a fixed-box detector stands in so
each test controls exactly what the detector says.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from bioscan_rebuild.core.params import ImageParams
from bioscan_rebuild.core.store import ImageStore
from bioscan_rebuild.detect.base import Detection
from bioscan_rebuild.images.process import DerivedStore, decode_photo, finish_photo, process_photos, stage_key

PARAMS = ImageParams()


class FixedDetector:
    name = "fixed"

    def __init__(self, box=(400, 300, 500, 360), status="ok"):
        self.box, self.status = box, status

    def params(self):
        return {"box": self.box, "status": self.status}

    def detect(self, image):
        if self.box is None:
            return Detection("no_object", None)
        return Detection(self.status, self.box, pixel_count=1234, score=0.9, candidates=1)

    def detect_batch(self, images, halves=None):
        return [self.detect(image) for image in images]


def jpeg(array, **save):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90, **save)
    return buffer.getvalue()


def photo(width=1024, height=768):
    rng = np.random.default_rng(0)
    array = np.full((height, width, 3), 220, np.uint8)
    array[height // 3 : height // 2, width // 3 : width // 2] = rng.integers(
        0, 80, (height // 2 - height // 3, width // 2 - width // 3, 3)
    )
    return array


def test_real_2880_original_becomes_1024x768_original_full(realdata):
    data = (realdata / "BIOSCAN-1M/dataset/bioscan_images/Diptera.jpg").read_bytes()
    decoded = decode_photo(data, PARAMS)
    assert decoded.status == "ok" and decoded.rgb.shape == (768, 1024, 3)
    assert decoded.source_size == (2880, 2160) and not decoded.reuse_source


def test_real_1024_jpeg_is_reused_as_original_full(realdata):
    path = realdata / "Bioscan-ImgFilter/dataset/filtered_imgs/valid/ABINP2539-21.1024px.jpg"
    data = path.read_bytes()
    result, images = finish_photo(data, decode_photo(data, PARAMS), FixedDetector().detect(None), PARAMS)
    assert result.original_full_is_source and images["original_full"] == data
    assert result.sha256["original_full"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "name,make,status",
    [
        ("zero bytes", lambda: b"", "empty_file"),
        ("truncated jpeg", lambda: jpeg(photo())[:20000], "undecodable"),
        ("garbage", lambda: b"\xff\xd8\xff\xe0" + b"\x00" * 500, "undecodable"),
        ("tiny", lambda: jpeg(photo(40, 30)), "too_small"),
    ],
)
def test_bad_inputs_get_a_status_and_no_images(name, make, status):
    data = make()
    result, images = finish_photo(data, decode_photo(data, PARAMS), None, PARAMS)
    assert result.status == status, name
    assert images == {} and result.box is None


def test_decompression_bomb_is_refused_before_decoding():
    buffer = io.BytesIO()
    Image.new("1", (20000, 12000)).save(buffer, format="PNG")  # 240 Mpixel, tiny file
    decoded = decode_photo(buffer.getvalue(), PARAMS)
    assert decoded.status == "too_large" and "20000x12000" in decoded.detail and decoded.rgb is None


def _tiled_tiff(side: int, tile: int) -> bytes:
    """A side x side RGB TIFF written by hand as one deflate tile of tile x tile pixels (Pillow writes no tiles)."""
    import struct
    import zlib

    data = zlib.compress(bytes(tile * tile * 3), 9)
    bits_at = 8 + len(data)
    ifd_at = bits_at + 6
    entries = [
        (256, 3, 1, side),
        (257, 3, 1, side),
        (258, 3, 3, bits_at),  # 8 bits per sample, three samples
        (259, 3, 1, 8),  # deflate
        (262, 3, 1, 2),  # RGB
        (277, 3, 1, 3),
        (284, 3, 1, 1),
        (322, 3, 1, tile),
        (323, 3, 1, tile),
        (324, 4, 1, 8),
        (325, 4, 1, len(data)),
    ]
    out = b"II*\x00" + struct.pack("<I", ifd_at) + data + struct.pack("<HHH", 8, 8, 8) + struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 and count == 1 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + packed
    return out + struct.pack("<I", 0)


def test_a_tiled_tiff_whose_tile_exceeds_the_pixel_cap_is_refused_before_decoding():
    """The cap was checked against the size the header gives: libtiff inflates a whole tile, so a 64 x 64 photo in
    one 4096 x 4096 tile (48 kB) took 48 MB, and a 2 MB file could take 2 GB. A tile within the cap decodes."""
    params = ImageParams(max_pixels=10_000, min_side=8)
    decoded = decode_photo(_tiled_tiff(64, 4096), params)
    assert decoded.status == "too_large" and decoded.rgb is None
    assert decoded.detail == "TIFF tiles of 4096x4096 > 10000 pixels (64x64 photo)"
    decoded = decode_photo(_tiled_tiff(64, 64), params)
    assert decoded.status != "too_large" and decoded.rgb.shape == (64, 64, 3)


def test_formats_and_modes_all_become_rgb_original_full():
    base = photo(2048, 1536)
    cases = {}
    for fmt in ("PNG", "TIFF"):
        buffer = io.BytesIO()
        Image.fromarray(base).save(buffer, format=fmt)
        cases[f"{fmt} named .jpg"] = buffer.getvalue()
    cases["grayscale"] = jpeg(base[:, :, 0])
    buffer = io.BytesIO()
    Image.fromarray(base).convert("CMYK").save(buffer, format="JPEG")
    cases["cmyk"] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(base[:, :, 0].astype(np.uint16) * 257).save(buffer, format="PNG")  # 16-bit grey
    cases["16-bit"] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([base, np.full(base.shape[:2], 255, np.uint8)])).save(buffer, format="PNG")
    cases["rgba"] = buffer.getvalue()
    for name, data in cases.items():
        decoded = decode_photo(data, PARAMS)
        assert decoded.status == "ok", (name, decoded.detail)
        assert decoded.rgb.shape == (768, 1024, 3) and decoded.rgb.dtype == np.uint8, name
        # The dark block is still where it was, whatever the format.
        assert decoded.rgb[320, 420].mean() < 120 and decoded.rgb[50, 50].mean() > 150, name


# EXIF 2.32, tag 0x0112: the visual side on which the stored image's 0th row and its 0th column are displayed.
EXIF_ROW0_COL0 = {3: ("bottom", "right"), 6: ("right", "top"), 8: ("left", "bottom")}
OPPOSITE = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}


def _displayed_corner(orientation: int, stored_corner: str) -> frozenset[str]:
    """Where a corner of the stored image shows (as the set of its two sides), read off the spec's table: the
    stored top-left lies on row 0 and column 0, the stored top-right on row 0 and the last column."""
    row0, col0 = EXIF_ROW0_COL0[orientation]
    return frozenset({row0, col0 if stored_corner == "top-left" else OPPOSITE[col0]})


def _corners_of_colour(rgb: np.ndarray, colour) -> set[frozenset[str]]:
    """Corners whose pixel 5 % in from both edges is near ``colour``."""
    height, width = rgb.shape[:2]
    found = set()
    for vertical, y in (("top", height // 20), ("bottom", height - 1 - height // 20)):
        for horizontal, x in (("left", width // 20), ("right", width - 1 - width // 20)):
            if np.abs(rgb[y, x].astype(int) - colour).max() < 60:
                found.add(frozenset({vertical, horizontal}))
    return found


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_exif_orientation_turns_the_photo_the_right_way(orientation, fmt):
    # Landscape, grey, a red square at the stored top-left and a blue one at the stored top-right: a rotation
    # the wrong way (6 and 8 swapped) or a mirror in place of a rotation puts one of them in the wrong corner.
    # Pillow turns a TIFF itself and reports its size upright: it used to be turned twice, squashed to 768x576.
    red, blue = (230, 20, 20), (20, 20, 230)
    base = np.full((768, 1024, 3), 128, np.uint8)
    base[:128, :128], base[:128, -128:] = red, blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(base).save(buffer, format=fmt, exif=exif.tobytes() if fmt == "JPEG" else exif)
    decoded = decode_photo(buffer.getvalue(), PARAMS)
    assert decoded.status == "ok" and not decoded.reuse_source
    turned = orientation in (6, 8)
    assert decoded.source_size == ((768, 1024) if turned else (1024, 768))
    assert decoded.rgb.shape == ((768, 576, 3) if turned else (768, 1024, 3))
    assert _corners_of_colour(decoded.rgb, red) == {_displayed_corner(orientation, "top-left")}
    assert _corners_of_colour(decoded.rgb, blue) == {_displayed_corner(orientation, "top-right")}


def test_crops_packages_and_size_fields():
    data = jpeg(photo())
    result, images = finish_photo(
        data, decode_photo(data, PARAMS), Detection("ok", (339, 208, 533, 493), 5000, 0.8, 1), PARAMS
    )
    assert result.status == "ok"
    assert (result.area_fraction, result.scale_factor) == (0.0703, 0.7578)
    assert result.image_measurement_value == 5000 and result.crop_rotated
    sizes = {name: Image.open(io.BytesIO(blob)).size for name, blob in images.items()}
    assert sizes["original_full"] == (1024, 768) and sizes["original_256"] == (341, 256)
    assert sizes["cropped_256"] == (341, 256)
    w, h = sizes["cropped"]
    assert w * 3 == h * 4 and w >= 399
    assert {k: hashlib.sha256(v).hexdigest() for k, v in images.items()} == result.sha256


def test_no_object_keeps_originals_only_and_edges_are_flagged():
    data = jpeg(photo())
    empty, images = finish_photo(data, decode_photo(data, PARAMS), Detection("no_object", None), PARAMS)
    assert empty.status == "no_object" and set(images) == {"original_full", "original_256"}
    assert empty.area_fraction is None and empty.box is None
    edge, images = finish_photo(data, decode_photo(data, PARAMS), Detection("ok", (0, 300, 80, 400), 10), PARAMS)
    assert edge.status == "touches_edge" and "cropped" in images
    many, _ = finish_photo(
        data, decode_photo(data, PARAMS), Detection("multiple_candidates", (10, 10, 90, 90), 10), PARAMS
    )
    assert many.status == "multiple_candidates"
    # a fused box two pixels short of the border the specimen crosses: the fusion backend puts it on the rim, and the
    # status says touches_edge (it said ok: 18 of 30 such real specimens); a box as near without that is ok
    decoded = decode_photo(data, PARAMS)
    height = decoded.rgb.shape[0]
    near = (300, 2, 400, height - 40)
    rim, _ = finish_photo(data, decoded, Detection("ok", near, 10, review=("box_on_rim",)), PARAMS)
    assert rim.status == "touches_edge" and "box_on_rim" in rim.review
    assert finish_photo(data, decoded, Detection("ok", near, 10), PARAMS)[0].status == "ok"


def test_a_bad_photo_does_not_stop_the_batch():
    good = jpeg(photo())
    results = process_photos([good, b"", good[:5000], good], FixedDetector(), PARAMS)
    assert [r.status for r, _ in results] == ["ok", "empty_file", "undecodable", "ok"]


def test_outputs_are_deterministic():
    data = jpeg(photo())
    first = process_photos([data], FixedDetector(), PARAMS)[0]
    second = process_photos([data], FixedDetector(), PARAMS)[0]
    assert first[0] == second[0] and first[1] == second[1]


@pytest.mark.parametrize("height", [768, 683])
def test_the_batch_path_shares_the_half_image_without_changing_outputs(height):
    """An odd side (3:2 photos: 1024x683) used to give a 384-px original_256 from the half, 383 px without it."""
    data = jpeg(photo(height=height))
    batch = process_photos([data], FixedDetector(), PARAMS)[0]
    decoded = decode_photo(data, PARAMS)
    direct = finish_photo(data, decoded, FixedDetector().detect(decoded.rgb), PARAMS)
    assert batch == direct
    small = Image.open(io.BytesIO(batch[1]["original_256"]))
    assert small.size == (1024 * 256 // height, 256)


def test_a_long_thin_photo_is_too_small_not_a_crash():
    """20000x64 passes min_side, but its original_full is 1024x3 and its 256-px package 87381 px wide, beyond JPEG:
    the encoder's error used to stop the whole shard."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 20000, 3), 200, np.uint8)).save(buffer, format="PNG")
    decoded = decode_photo(buffer.getvalue(), PARAMS)
    assert decoded.status == "too_small"
    assert decoded.detail == "20000x64 px: its original_full would be 1024x3, shorter side below 64 px"
    # with a larger original_full, a photo 8 px high passes min_side and its 256-px package is still too wide
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 20000, 3), 200, np.uint8)).save(buffer, format="PNG")
    wide = ImageParams(original_full_size=(4096, 3072), min_side=8)
    results = process_photos([buffer.getvalue(), jpeg(photo())], FixedDetector(), wide)
    assert [result.status for result, _ in results] == ["too_small", "ok"]
    assert "too long and thin" in results[0][0].detail


def test_derived_store_round_trip_and_keys(tmp_path):
    store = ImageStore(tmp_path, mode="copy")
    key = stage_key(PARAMS, FixedDetector())
    assert key != stage_key(ImageParams(jpeg_quality=80), FixedDetector())
    assert key != stage_key(PARAMS, FixedDetector(box=(1, 1, 50, 50)))
    # a box-only backend's pixel counts come from the classical segmenter: a change to it is a new key
    from bioscan_rebuild.detect.classical import ClassicalDetector

    with_segmenter = stage_key(PARAMS, FixedDetector(), ClassicalDetector())
    assert with_segmenter != key != stage_key(PARAMS, FixedDetector(), ClassicalDetector(bar=60.0))
    assert with_segmenter != stage_key(PARAMS, FixedDetector(), ClassicalDetector(bar=60.0))
    data = jpeg(photo())
    result, images = process_photos([data], FixedDetector(), PARAMS)[0]
    derived = DerivedStore(store, key)
    sha = hashlib.sha256(data).hexdigest()
    assert derived.load(sha) is None
    derived.save(sha, result, images)
    assert derived.load(sha) == result
    assert derived.image_path(sha, "cropped").read_bytes() == images["cropped"]


def test_truncated_photos_fail_even_when_pillow_is_told_to_accept_them(monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as importing ultralytics does
    data = jpeg(photo())[:20000]
    assert decode_photo(data, PARAMS).status == "undecodable"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is left as it was


def test_corrupt_photos_fail_cleanly_after_ultralytics_patches_pillow(monkeypatch):
    import sys
    import types

    from PIL import Image

    loaded = sys.modules.get("ultralytics.utils.patches")  # the real patch, if another test imported it
    original = getattr(loaded, "_image_open", None) or Image.open

    def patched(fp, *args, **kwargs):  # what ultralytics' PIL patch does offline on unknown files
        try:
            return original(fp, *args, **kwargs)
        except Image.UnidentifiedImageError:
            raise ModuleNotFoundError("No module named 'pi_heif'") from None

    monkeypatch.setattr(Image, "open", patched)
    monkeypatch.setitem(sys.modules, "ultralytics.utils.patches", types.SimpleNamespace(_image_open=original))
    data = b"\xff\xd8\xff\xe0" + b"\x00" * 500
    assert decode_photo(data, PARAMS).status == "undecodable"


def test_plain_jpeg_fast_path_gives_pillows_pixels(realdata):
    from PIL import Image as PILImage

    photos = sorted((realdata / "imgfilter-dev").glob("*.jpg"))
    assert len(photos) == 295  # all of ../shared's imgfilter-dev photos: an empty glob must not pass
    for path in photos[:5]:
        data = path.read_bytes()
        decoded = decode_photo(data, PARAMS)
        with PILImage.open(path) as image:
            reference = np.asarray(image.convert("RGB"))
        assert decoded.status == "ok" and decoded.reuse_source
        assert np.array_equal(decoded.rgb, reference), path.name


def test_a_float_tiff_in_0_to_1_is_not_black(tmp_path):
    """Scientific float TIFFs hold 0..1: divided by 255 they decoded to a black photo, `ok`, and nothing detected."""
    import io

    from PIL import Image

    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.images.process import decode_photo

    ramp = np.tile(np.linspace(0.0, 1.0, 256, dtype=np.float32), (128, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp, mode="F").save(buffer, format="TIFF")
    decoded = decode_photo(buffer.getvalue(), ImageParams())
    assert decoded.status == "ok"
    assert decoded.rgb[0, 0, 0] == 0 and decoded.rgb[0, -1, 0] == 255


def test_a_min_side_below_8_is_refused():
    """images.min_side 1 let a 200x1 photo halve to nothing and crash its whole photo batch."""
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.core.params import ImageParams

    with pytest.raises(InputError, match="images.min_side: 1 is below 8"):
        ImageParams.from_dict({"min_side": 1})
    assert ImageParams.from_dict({"min_side": 8}).min_side == 8


def test_a_contact_sheet_of_thousands_of_photos_keeps_the_rows_a_jpeg_can_hold(tmp_path):
    """2,600 tiles made a sheet taller than JPEG allows: its job failed after writing half its outputs."""
    import cv2
    import pyarrow as pa

    from bioscan_rebuild.core.store import ImageStore
    from bioscan_rebuild.images.contact_sheet import write_contact_sheet
    from bioscan_rebuild.images.process import JPEG_MAX_SIDE

    row = {"image_sha256": "ab" * 32, "params_key": "k" * 16, "original_full_is_source": False, "x0": None}
    rows = [{**row, "processid": f"P{i}", "image_status": "ok", "needs_review": False} for i in range(2600)]
    write_contact_sheet(pa.Table.from_pylist(rows), ImageStore(tmp_path / "store"), tmp_path / "sheet.jpg", 2600)
    sheet = cv2.imread(str(tmp_path / "sheet.jpg"))
    assert sheet.shape[1] == 8 * 256 and JPEG_MAX_SIDE - 300 < sheet.shape[0] <= JPEG_MAX_SIDE


def _swapped_srgb_profile() -> bytes:
    """An RGB colour profile that is not sRGB: LittleCMS's sRGB with its red and blue primaries swapped (and its
    description renamed), so converting through it to sRGB swaps red and blue: easy to see, exact to check."""
    from PIL import ImageCms

    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = int.from_bytes(data[128:132], "big")
    entries = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    data[red + 4 : red + 8], data[blue + 4 : blue + 8] = data[blue + 4 : blue + 8], data[red + 4 : red + 8]
    description = data.index("sRGB".encode("utf-16-be"))
    data[description : description + 8] = "swap".encode("utf-16-be")
    return bytes(data)


def _real_photo(realdata) -> np.ndarray:
    path = sorted((realdata / "imgfilter-dev").glob("*.jpg"))[0]
    return np.asarray(Image.open(path).convert("RGB"))


def _jpeg(pixels: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


def test_a_photo_in_another_colour_profile_is_converted_to_srgb_in_every_package(realdata):
    from PIL import ImageCms

    photo = _real_photo(realdata).copy()
    photo[600:700, 40:140] = (220, 30, 30)  # a red patch, away from the specimen
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    results = process_photos(
        [_jpeg(photo, icc_profile=_swapped_srgb_profile()), _jpeg(photo, icc_profile=srgb), _jpeg(photo)],
        FixedDetector(),
        ImageParams(),
    )
    (converted, images), (tagged, _), (plain, _) = results
    # the source's values mean blue in its profile: every package shows blue, original_full re-encoded in sRGB
    assert not converted.original_full_is_source
    for name in ("original_full", "original_256"):
        patch = np.asarray(Image.open(io.BytesIO(images[name])).convert("RGB"), dtype=float)
        scale = patch.shape[0] / 768
        mean = patch[int(620 * scale) : int(680 * scale), int(60 * scale) : int(120 * scale)].reshape(-1, 3).mean(0)
        assert mean[2] > 180 and mean[0] < 60, (name, mean)
    # a picture with alpha (composited on white) or a palette is converted the same way
    for mode in ("RGBA", "P"):
        buffer = io.BytesIO()
        Image.fromarray(photo).convert(mode).save(buffer, format="PNG", icc_profile=_swapped_srgb_profile())
        decoded = decode_photo(buffer.getvalue(), ImageParams())
        mean = decoded.rgb[620:680, 60:120].reshape(-1, 3).mean(0)
        assert mean[2] > 180 and mean[0] < 60, (mode, mean)
    # an sRGB profile, or none: the pixels as they are, and a 1024x768 JPEG source is original_full itself
    assert tagged.original_full_is_source and plain.original_full_is_source
    assert tagged.sha256["original_256"] == plain.sha256["original_256"]


def _profile_with(swap: bool = False, linear: bool = False) -> bytes:
    """LittleCMS's sRGB profile, its description kept ("sRGB built-in"), with red and blue swapped or with a linear
    tone curve (GIMP's "Linear sRGB": sRGB's primaries, gamma 1)."""
    from PIL import ImageCms

    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = int.from_bytes(data[128:132], "big")
    entries = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    if swap:
        red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
        data[red + 4 : red + 8], data[blue + 4 : blue + 8] = data[blue + 4 : blue + 8], data[red + 4 : red + 8]
    if linear:
        for tag in (b"rTRC", b"gTRC", b"bTRC"):
            offset = int.from_bytes(data[entries[tag] + 4 : entries[tag] + 8], "big")
            data[offset : offset + 12] = b"curv" + bytes(8)  # a curve of no points: the identity
            data[entries[tag] + 8 : entries[tag] + 12] = (12).to_bytes(4, "big")
    assert "sRGB".encode("utf-16-be") in data or b"sRGB" in data
    return bytes(data)


def test_a_profile_is_srgb_by_what_it_does_not_by_its_name(realdata):
    """A profile whose description says sRGB was never applied: a linear-sRGB photo (GIMP's built-in profile) was
    released a third too dark with half its pixel count, and one with other primaries kept them."""
    from PIL import ImageCms

    photo = _real_photo(realdata).copy()
    photo[600:700, 40:140] = (220, 30, 30)
    swapped = decode_photo(_jpeg(photo, icc_profile=_profile_with(swap=True)), ImageParams())
    mean = swapped.rgb[620:680, 60:120].reshape(-1, 3).mean(0)
    assert mean[2] > 180 and mean[0] < 60, mean
    # linear values of the photo, in a profile that says so: decoded to the photo's own sRGB values
    linear = (np.power(photo / 255.0, 2.2) * 255 + 0.5).astype(np.uint8)
    decoded = decode_photo(_jpeg(linear, icc_profile=_profile_with(linear=True)), ImageParams())
    plain = decode_photo(_jpeg(photo), ImageParams())
    difference = np.abs(decoded.rgb.astype(int) - plain.rgb.astype(int))
    assert np.median(difference) <= 3 and abs(decoded.rgb.mean() - plain.rgb.mean()) < 3, decoded.rgb.mean()
    # a true sRGB profile still leaves the pixels as they are
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert np.array_equal(decode_photo(_jpeg(photo, icc_profile=srgb), ImageParams()).rgb, plain.rgb)


def test_a_16_bit_min_is_white_tiff_is_decoded_as_the_8_bit_one():
    """A grey TIFF stored min-is-white (photometric 0): Pillow inverts 8-bit ones, not 16-bit ones, which were
    decoded as negatives (the dark well boxed as a specimen covering 30 % of the photo)."""
    import struct

    rng = np.random.default_rng(0)
    grey = np.clip(rng.normal(190, 20, (300, 400)), 0, 255).astype(np.uint8)
    grey[100:200, 150:250] = 40

    def min_is_white(bits: int) -> bytes:
        if bits == 8:
            picture = Image.fromarray(255 - grey)
        else:
            picture = Image.frombytes(
                "I;16", (400, 300), (65535 - grey.astype(np.uint16) * 257).astype("<u2").tobytes()
            )
        buffer = io.BytesIO()
        picture.save(buffer, "TIFF")
        data = bytearray(buffer.getvalue())
        ifd = struct.unpack_from("<I", data, 4)[0]
        for i in range(struct.unpack_from("<H", data, ifd)[0]):
            if struct.unpack_from("<H", data, ifd + 2 + 12 * i)[0] == 262:
                struct.pack_into("<H", data, ifd + 2 + 12 * i + 8, 0)
        return bytes(data)

    eight, sixteen = (decode_photo(min_is_white(bits), ImageParams()) for bits in (8, 16))
    assert eight.status == sixteen.status == "ok"
    assert abs(float(eight.rgb.mean()) - float(grey.mean())) < 1
    assert np.abs(sixteen.rgb.astype(int) - eight.rgb.astype(int)).max() <= 1


def test_a_colour_key_is_shown_on_white_as_alpha_is():
    """A PNG whose transparency is a colour key (tRNS on a grey or RGB picture) showed the key colour (black)
    where the same picture with an alpha channel shows white: the crops and the detection differed by how the
    file stores its transparency."""
    pixels = np.full((300, 400, 3), 80, np.uint8)
    pixels[:, :200] = 0
    alpha = np.where(pixels[..., :1] == 0, 0, 255).astype(np.uint8)
    pictures = {
        "RGBA": _saved(Image.fromarray(np.concatenate([pixels, alpha], axis=2)), "PNG"),
        "RGB key": _saved(Image.fromarray(pixels), "PNG", transparency=(0, 0, 0)),
        "L key": _saved(Image.fromarray(pixels[..., 0]), "PNG", transparency=0),
    }
    for name, data in pictures.items():
        rgb = decode_photo(data, ImageParams()).rgb
        assert rgb[10, 10].tolist() == [255, 255, 255] and rgb[10, 300].tolist() == [80, 80, 80], name
    deep = np.where(pixels[..., 0] == 0, 0, 30000).astype(np.uint16)  # a 16-bit grey PNG with its key
    rgb = decode_photo(_saved(Image.fromarray(deep), "PNG", transparency=0), ImageParams()).rgb
    assert rgb[10, 10].tolist() == [255, 255, 255] and rgb[10, 300].tolist() != [255, 255, 255]


def test_a_grey_photo_is_flagged_for_review(realdata):
    photo = _real_photo(realdata)
    grey = io.BytesIO()
    Image.fromarray(photo).convert("L").save(grey, format="JPEG", quality=95)
    (grey_result, _), (colour_result, _) = process_photos(
        [grey.getvalue(), _jpeg(photo)], FixedDetector(), ImageParams()
    )
    assert "grey_photo" in grey_result.review and "grey_photo" not in colour_result.review
    # a grey picture saved as RGB, as cameras and editors do: flagged by what it shows
    grey_rgb = np.repeat(np.asarray(Image.fromarray(photo).convert("L"))[:, :, None], 3, axis=2)
    ((result, _),) = process_photos([_jpeg(grey_rgb)], FixedDetector(), ImageParams())
    assert "grey_photo" in result.review


def test_only_a_plain_jpeg_with_nothing_glued_on_is_its_own_original_full(realdata):
    from bioscan_rebuild.images.process import _plain_jpeg

    plain = _jpeg(_real_photo(realdata))
    assert _plain_jpeg(plain) and _plain_jpeg(plain + b"\x00" * 8)
    # the imager's metadata after the end marker (the real 2880x2160 originals carry a Keyence block) stays
    for name in ("Diptera.jpg", "Hymenoptera.jpg"):
        original = (realdata / "BIOSCAN-1M/dataset/bioscan_images" / name).read_bytes()
        assert not original.endswith(b"\xff\xd9") and _plain_jpeg(original)
    assert _plain_jpeg(_jpeg(_real_photo(realdata), progressive=True))
    frame = plain.index(b"\xff\xc0")
    arithmetic = plain[:frame] + b"\xff\xc9" + plain[frame + 2 :]  # the same frame header, arithmetic coded
    assert not _plain_jpeg(arithmetic)
    appended = plain + _jpeg(np.zeros((64, 64, 3), np.uint8))  # a second file glued on after the end marker
    assert not _plain_jpeg(appended) and not _plain_jpeg(plain[: len(plain) // 2])
    (glued, images), (whole, _) = process_photos([appended, plain], FixedDetector(), ImageParams())
    assert not glued.original_full_is_source and whole.original_full_is_source
    assert images["original_full"] != appended and images["original_full"].endswith(b"\xff\xd9")


def _saved(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["TIFF", "PNG"])
def test_a_file_of_several_pictures_is_refused_not_cut_to_its_first(realdata, fmt):
    """A multi-page TIFF whose first page is a thumbnail was released as that thumbnail (an animated PNG as its
    first frame), silently. Now the inventory and the decoder say what it is; an MPO (a camera's photo and its
    previews) stays one photo."""
    from bioscan_rebuild.ingest.inventory import inspect_image

    with Image.open(sorted((realdata / "imgfilter-dev").glob("*.jpg"))[0]) as photo:
        photo = photo.convert("RGB")
    thumbnail = photo.resize((128, 96))
    data = _saved(thumbnail, fmt, save_all=True, append_images=[photo])
    facts = inspect_image(data)
    assert facts["image_problem"] == "undecodable"
    assert facts["image_problem_detail"].startswith(f"2 pictures in one {fmt.lower()} file")
    decoded = decode_photo(data, PARAMS)
    assert (decoded.status, decoded.detail) == ("undecodable", facts["image_problem_detail"])
    single = _saved(photo, fmt)
    assert inspect_image(single)["image_problem"] is None and decode_photo(single, PARAMS).status == "ok"


def test_integer_and_float_grey_images_never_turn_black_for_one_brighter_pixel():
    """A 32-bit grey image (mode I or F) with its brightest pixel at 255 decoded as 8-bit; at 256 it was divided by
    65535 and came out black. The white level is now the smallest 2^k - 1 holding the brightest pixel."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (300, 400)).astype(np.int32)
    means = []
    for peak_shift in (0, 1):
        for mode, values in (("I", base + peak_shift), ("F", (base + peak_shift).astype(np.float32))):
            decoded = decode_photo(_saved(Image.fromarray(values, mode), "TIFF"), PARAMS)
            assert decoded.status == "ok"
            means.append(decoded.rgb.mean())
    assert min(means) > 0.45 * max(means)  # at most half as bright, never black (it was 1/256)
    # 16-bit photos keep their 16-bit reading; 12-bit data in a 32-bit image is stretched from 4095
    twelve = np.full((200, 300), 4095, np.int32)
    assert decode_photo(_saved(Image.fromarray(twelve, "I"), "TIFF"), PARAMS).rgb.min() == 255
    sixteen = np.full((200, 300), 4095, np.uint16)
    assert decode_photo(_saved(Image.fromarray(sixteen), "PNG"), PARAMS).rgb.max() == 16  # round(4095 / 257)


def test_a_large_16_bit_photo_decodes_in_bounded_memory():
    """A 16-bit PNG was converted in whole-photo float64 copies: 27 bytes a pixel, so a 100-Mpixel photo under the
    pixel cap (a file of some 200 KB) needed gigabytes. Now in blocks of rows: what numpy allocates stays under
    8 bytes a pixel (the uint8 grey and RGB planes and one block)."""
    import tracemalloc

    ramp = np.tile(np.arange(3000, dtype=np.uint16) * 21, (3000, 1))
    data = _saved(Image.fromarray(ramp), "PNG")
    tracemalloc.start()
    try:
        decoded = decode_photo(data, PARAMS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.status == "ok"
    assert peak < 8 * ramp.size, f"{peak / ramp.size:.1f} bytes a pixel"


def test_the_grey_or_cmyk_jpeg_check_decodes_at_an_eighth(monkeypatch):
    """The strict check of a grey or CMYK JPEG asked for 1/8 scale with min_factor alone, which decodes at full
    size: a 9000x9000 CMYK JPEG took 311 MB for the check."""
    import simplejpeg

    shapes = []
    original = simplejpeg.decode_jpeg

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        shapes.append(out.shape[:2])
        return out

    monkeypatch.setattr(simplejpeg, "decode_jpeg", spy)
    grey = Image.fromarray(np.random.default_rng(1).integers(0, 256, (1536, 2048), dtype=np.uint8))
    for image in (grey, grey.convert("CMYK")):
        shapes.clear()
        assert decode_photo(_saved(image, "JPEG", quality=90), PARAMS).status == "ok"
        assert shapes == [(192, 256)]


def test_a_truncated_png_holding_the_word_iend_in_its_text_is_caught_at_the_inventory():
    """The inventory looked for the bytes "IEND" anywhere: a PNG cut short whose comment held them passed, went into
    the store and failed later as image_unusable. Its chunks are now walked to the end chunk."""
    from PIL import PngImagePlugin

    from bioscan_rebuild.ingest.inventory import inspect_image

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "IEND here")
    noise = np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    data = _saved(Image.fromarray(noise), "PNG", pnginfo=info)
    assert inspect_image(data)["image_problem"] is None
    cut = inspect_image(data[: len(data) // 2])
    assert (cut["image_problem"], cut["image_problem_detail"]) == ("undecodable", "truncated png: no end marker")


def test_a_png_with_more_than_a_megabyte_of_compressed_text_decodes():
    """Pillow refuses compressed text chunks over 1 MB by default (XMP with a long edit history): the photo, whose
    pixels are fine, was undecodable at the inventory."""
    from PIL import PngImagePlugin

    from bioscan_rebuild.ingest.inventory import inspect_image

    info = PngImagePlugin.PngInfo()
    info.add_text("XML:com.adobe.xmp", "<x>" + "edit " * 400_000 + "</x>", zip=True)
    data = _saved(Image.fromarray(np.full((300, 400, 3), 200, np.uint8)), "PNG", pnginfo=info)
    assert inspect_image(data)["image_problem"] is None
    assert decode_photo(data, PARAMS).status == "ok"


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "BMP"])
def test_a_format_the_inventory_refuses_is_refused_by_the_decoder_too(fmt):
    """The `detect` command (no inventory before it) boxed GIF, WebP and BMP files that the workflow rejects as
    `undecodable`: the two now give one answer."""
    data = _saved(Image.fromarray(np.full((300, 400, 3), 200, np.uint8)), fmt)
    decoded = decode_photo(data, PARAMS)
    assert (decoded.status, decoded.detail) == ("undecodable", f"unsupported format {fmt}")
