"""Argument helpers shared by several command groups."""

from __future__ import annotations


def batch_dirs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        batch, _, directory = pair.partition("=")
        if not directory:
            raise SystemExit(f"--image-dir takes BATCH=DIR, got {pair!r}")
        out[batch] = directory
    return out
