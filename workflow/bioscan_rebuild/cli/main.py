"""`bioscan-rebuild`: one command, a subcommand per stage; each works outside Snakemake too.

One module per command group (``cli/{synth,ingest,images,metadata,splits,release}.py``): each parses its
arguments and calls its stage, nothing else."""

from __future__ import annotations

import argparse
import sys

from bioscan_rebuild.cli import images, ingest, metadata, release, splits, synth
from bioscan_rebuild.core.errors import AccountingError, InputError

GROUPS = (synth, ingest, images, metadata, splits, release)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bioscan-rebuild", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an input error")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as error:  # a person's to fix: one line, no traceback
        if args.debug:
            raise
        print(f"bioscan-rebuild: error: {error}", file=sys.stderr)
        return 2
    except AccountingError as error:  # the run lost or double-counted something: stop before anything is released
        if args.debug:
            raise
        print(f"bioscan-rebuild: accounting does not balance: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
