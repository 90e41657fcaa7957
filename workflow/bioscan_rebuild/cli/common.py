"""Argument helpers shared by several command groups."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a shard count of 0 or -2 used to end in a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def batch_dirs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        batch, _, directory = pair.partition("=")
        if not directory:
            raise SystemExit(f"--image-dir takes BATCH=DIR, got {pair!r}")
        out[batch] = directory
    return out
