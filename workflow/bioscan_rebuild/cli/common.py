"""Argument helpers shared by several command groups."""

from __future__ import annotations

import argparse

from bioscan_rebuild.core.errors import InputError


def json_option(text: str | None, option: str):
    """The JSON object of a command-line option (``--params`` and the like: the rules write them, a person may
    not), or None when not given; InputError naming the option when it does not parse or is no object (a list
    or a string was a traceback; ``null`` and ``[]`` ran as no parameters)."""
    import json

    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{option}: not JSON ({error}): {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise InputError(f'{option}: not a JSON object ({{"key": value, ...}}): {text[:80]!r}')
    return value


def _whole_number_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0 (a seed of -1 used to end in numpy's traceback)."""
    return _whole_number_at_least(text, 0)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a shard count of 0 or -2 used to end in a traceback)."""
    return _whole_number_at_least(text, 1)


def batch_dirs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        batch, _, directory = pair.partition("=")
        if not directory:
            raise InputError(f"--image-dir takes BATCH=DIR, got {pair!r}")
        out[batch] = directory
    return out


def tie_order_option(parser) -> None:
    """``--tie-order`` for the commands that split (``splits.protocol.check_tie_order``)."""
    from bioscan_rebuild.splits.protocol import TIE_ORDERS

    parser.add_argument(
        "--tie-order",
        choices=TIE_ORDERS,
        default="reference",
        help="reference (default): refuse a machine whose numpy orders equal barcode sizes otherwise than the one "
        "that made the published splits; host: accept this machine's order (the summary says so)",
    )


def distinct_outputs(inputs=(), outputs=(), folders=()) -> None:
    """InputError, before anything is written, when an output is one of the inputs, two outputs are one file, or
    an output lies in an input folder (``metadata in.tsv -o in.tsv`` replaced the export, ``detect photos
    photos/x.jpg`` a photo, and each exited 0)."""
    import os

    def real(path) -> str:
        return os.path.realpath(os.fspath(path))

    given = [path for path in inputs if path]
    seen = {}
    for output in (path for path in outputs if path):
        where = real(output)
        for path in given:
            if where == real(path):
                raise InputError(f"{output}: the output is an input ({path}): give it another name")
        for folder in (path for path in folders if path):
            if os.path.commonpath([where, real(folder)]) == real(folder):
                raise InputError(f"{output}: an output inside the input folder {folder}: write it elsewhere")
        if where in seen:
            raise InputError(f"{output}: given for two outputs (also {seen[where]})")
        seen[where] = output


def file_outputs(*paths) -> None:
    """InputError, before any work, for an output file named by a folder that exists (the write at the end was
    refused after the whole run)."""
    import os

    for path in paths:
        if path and os.path.isdir(path):
            raise InputError(f"{path}: a folder: give the name of a file to write")


def bounded_int(minimum: int, maximum: int):
    """An argparse type: a whole number in [minimum, maximum] (the config schema's limits, where it has them)."""

    def parse(text: str) -> int:
        value = _whole_number_at_least(text, minimum)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{value} is above {maximum}")
        return value

    parse.__name__ = f"whole number {minimum}..{maximum}"
    return parse
