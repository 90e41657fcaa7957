"""One strict parameter dataclass per stage.

The config schema (``workflow/schemas/config.schema.yaml``) is the one place defaults are set for the
workflow; the defaults here are the same values (a test holds them equal) so that the commands give the
same result outside Snakemake. Each rule passes its stage one JSON document; ``from_dict`` refuses keys it
does not know, because a misspelt key would otherwise run silently with the default.
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import asdict, dataclass, fields
from typing import Self

from bioscan_rebuild.core.errors import InputError


class StageParams:
    """Strict parsing from a JSON-like mapping (lists become tuples where the field is a tuple): unknown keys, values
    of another type and values outside the schema's limits are refused (``InputError``), as the workflow's schema
    refuses them, so that a command given them by hand says so instead of failing deep inside or running wrong."""

    SECTION = "stage"  # the config section, for messages
    # field -> the config schema's limits on it (minimum, maximum, exclusiveMinimum, enum; for a tuple, its
    # items'): the command line's copy of them, which a test holds equal to the schema
    RULES: dict = {}

    @classmethod
    def from_dict(cls, values: dict | None) -> Self:
        values = dict(values or {})
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown {cls.SECTION} parameters {unknown}; known: {sorted(known)}")
        hints = typing.get_type_hints(cls)
        for name, value in values.items():
            where = f"{cls.SECTION}.{name}"
            values[name] = typed_value(where, value, hints[name])
            _within(where, values[name], cls.RULES.get(name, {}))
        return cls(**values)

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def typed_value(where: str, value, hint):
    """``value`` as ``hint`` wants it (a list for a tuple, a whole float for an int), or InputError naming it.
    Numpy scalars count as the numbers they are (a fitted rule's parameters); text never converts to one."""
    import numbers

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [arg for arg in args if arg is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: {value!r} is not a list")
        if args[-1] is Ellipsis:
            return tuple(typed_value(where, item, args[0]) for item in value)
        if len(value) != len(args):
            raise InputError(f"{where}: {value!r} has {len(value)} items, not {len(args)}")
        return tuple(typed_value(where, item, kind) for item, kind in zip(value, args))
    import numpy as np

    switch = isinstance(value, (bool, np.bool_))  # numpy's bool is no bool subclass
    if hint is bool:
        if switch:
            return bool(value)
        raise InputError(f"{where}: {value!r} is not true or false")
    if hint is int:
        if isinstance(value, numbers.Integral) and not switch:
            return int(value)
        if isinstance(value, numbers.Real) and not switch and float(value).is_integer():
            return int(value)
        raise InputError(f"{where}: {value!r} is not a whole number")
    if hint is float:
        if isinstance(value, numbers.Real) and not switch:
            return float(value)
        raise InputError(f"{where}: {value!r} is not a number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise InputError(f"{where}: {value!r} is not text")
    return value


def _within(where: str, value, rules: dict) -> None:
    """InputError when ``value`` (or, for a tuple, an item) breaks one of the schema's ``rules``."""
    if isinstance(value, tuple):  # no marker kept would refuse every record, silently
        if "minItems" in rules and len(value) < rules["minItems"]:
            raise InputError(f"{where}: {list(value)} holds fewer than {rules['minItems']} items")
        if "maxItems" in rules and len(value) > rules["maxItems"]:
            raise InputError(f"{where}: {list(value)} holds more than {rules['maxItems']} items")
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, float) and not math.isfinite(item):  # NaN passed every limit (each compare is False)
            raise InputError(f"{where}: {item!r} is not a finite number")
        if "pattern" in rules and not re.search(rules["pattern"], str(item)):
            raise InputError(f"{where}: {item!r} does not match {rules['pattern']!r}")
        if "enum" in rules and item not in rules["enum"]:
            raise InputError(f"{where}: {item!r} is not one of {list(rules['enum'])}")
        if "minimum" in rules and item < rules["minimum"]:
            raise InputError(f"{where}: {item!r} is below {rules['minimum']}")
        if "exclusiveMinimum" in rules and item <= rules["exclusiveMinimum"]:
            raise InputError(f"{where}: {item!r} must be above {rules['exclusiveMinimum']}")
        if "maximum" in rules and item > rules["maximum"]:
            raise InputError(f"{where}: {item!r} is above {rules['maximum']}")


@dataclass(frozen=True)
class IngestParams(StageParams):
    """``ingest``: which rows and files are read, and how duplicates across deliveries are settled."""

    SECTION = "ingest"
    RULES = {
        "markers": {"minItems": 1},
        "image_name_pattern": {"pattern": r"\(\?P<processid>"},
        "duplicate_policy": {"enum": ("latest", "first", "reject")},
    }

    markers: tuple[str, ...] = ("COI-5P",)
    missing_values: tuple[str, ...] = ("", "None", "not_classified", "no_data")
    image_name_pattern: str = r"^(?P<processid>.+?)(?:\.1024px)?\.(?:jpe?g|png|tiff?)$"
    require_images: bool = True
    duplicate_policy: str = "latest"


# Photos per contact sheet (images.contact_sheet_size): a report setting, not an image-stage parameter.
CONTACT_SHEET_SIZE = 120


@dataclass(frozen=True)
class ImageParams(StageParams):
    """``images`` (all but ``detector`` and ``contact_sheet_size``): decode limits, crop geometry, JPEGs."""

    SECTION = "images"
    RULES = {
        "original_full_size": {"minimum": 64, "minItems": 2, "maxItems": 2},
        "enlarge": {"minimum": 0, "maximum": 4},
        "aspect": {"minimum": 1, "minItems": 2, "maxItems": 2},
        "pad_color": {"minimum": 0, "maximum": 255, "minItems": 3, "maxItems": 3},
        "short_side": {"minimum": 16},
        "jpeg_quality": {"minimum": 1, "maximum": 100},
        "max_pixels": {"minimum": 1},
        "min_side": {"minimum": 8},
    }

    original_full_size: tuple[int, int] = (1024, 768)
    enlarge: float = 0.4
    aspect: tuple[int, int] = (4, 3)
    pad_color: tuple[int, int, int] = (204, 218, 243)
    short_side: int = 256
    jpeg_quality: int = 90
    max_pixels: int = 100_000_000
    min_side: int = 64

    def __post_init__(self):
        # below 8 px a photo halves to nothing and the detector's reductions fail: too_small is the outcome
        if not isinstance(self.min_side, int) or self.min_side < MIN_SIDE_FLOOR:
            raise InputError(f"images.min_side: {self.min_side!r}: give a whole number of at least {MIN_SIDE_FLOOR}")
        if self.min_side > min(self.original_full_size):  # every photo would be too_small
            raise InputError(
                f"images.min_side {self.min_side} is above the short side of images.original_full_size "
                f"{list(self.original_full_size)}: every photo would be too_small"
            )


MIN_SIDE_FLOOR = 8


@dataclass(frozen=True)
class BarcodeParams(StageParams):
    """``barcodes``: what a cleaned barcode must be to be kept."""

    SECTION = "barcodes"
    RULES = {"min_length": {"minimum": 1}, "max_length": {"minimum": 1}, "max_ambiguity": {"minimum": 0, "maximum": 1}}

    min_length: int = 200
    max_length: int = 2000  # no COI-5P barcode is longer: a sequence pasted twice, or another marker's
    max_ambiguity: float = 0.05
    trim_end_n: bool = True

    def __post_init__(self):
        if self.min_length > self.max_length:  # every barcode would be rejected
            raise InputError(
                f"barcodes.min_length {self.min_length} is above barcodes.max_length {self.max_length}: every "
                "barcode would be rejected"
            )


@dataclass(frozen=True)
class TaxonomyParams(StageParams):
    """``taxonomy`` (all but the ``fixes`` and ``corrections`` tables): conflict and inference rules."""

    SECTION = "taxonomy"
    RULES = {
        "barcode_ratio": {"exclusiveMinimum": 0, "maximum": 1},
        "bin_ratio": {"exclusiveMinimum": 0, "maximum": 1},
        "bin_barcode_ratio": {"exclusiveMinimum": 0, "maximum": 1},
        "scope_rank": {"enum": ("phylum", "class", "order", "family", "subfamily", "genus", "species")},
    }

    barcode_ratio: float = 0.8  # majority share needed within records sharing a barcode
    bin_ratio: float = 0.8  # ... within records sharing a BIN
    bin_barcode_ratio: float = 0.8  # majority share for BIN conflicts among identical barcodes
    fill_genus_from_species: bool = True
    infer_parents: bool = True
    scope_rank: str = "phylum"  # records labelled outside scope_taxa at this rank leave as out_of_scope
    scope_taxa: tuple[str, ...] = ("Arthropoda",)  # empty: no scope


@dataclass(frozen=True)
class ExportOptions(StageParams):
    """``export`` (all but ``formats``): what the release files look like."""

    SECTION = "export"
    RULES = {
        "image_package": {"enum": ("original_full", "cropped", "original_256", "cropped_256")},
        "licence": {"pattern": r'^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>"{}|\\^`]+$'},  # a URI
        "row_group_bytes": {"minimum": 1 << 20},
        "file_bytes": {"minimum": 1 << 20},
        "hdf5_batch": {"minimum": 1, "maximum": 65536},  # the rows (and their images) held at once
        "version": {"pattern": r"\S"},  # an empty version or name failed the release's last step
        "name": {"pattern": r"\S"},
        "zip_pretrain_parts": {"minimum": 1, "maximum": 256},
    }

    image_package: str = "cropped_256"  # the package in the images Parquet and the HDF5 file
    row_group_bytes: int = 64 << 20
    file_bytes: int = 512 << 20
    hdf5_batch: int = 1024
    licence: str = "https://creativecommons.org/licenses/by/3.0/"  # an IRI: JSON-LD and Croissant link it
    version: str = "0.1.0"
    name: str = "BIOSCAN-5M rebuild"
    zip_packages: bool = False  # also zip each image package per split group (pretrain / train / eval)
    zip_pretrain_parts: int = 2  # the pretrain zips come in this many parts, by chunk (published: 2)
