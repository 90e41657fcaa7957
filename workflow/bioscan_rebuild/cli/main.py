"""`bioscan-rebuild`: one command, a subcommand per stage; each works outside Snakemake too.

One module per command group (``cli/{synth,ingest,images,metadata,splits,stats,release}.py``): each parses its
arguments and calls its stage, nothing else."""

from __future__ import annotations

import argparse
import errno
import os
import sys

from bioscan_rebuild.cli import images, ingest, metadata, release, splits, stats, synth
from bioscan_rebuild.core.errors import AccountingError, InputError

GROUPS = (synth, ingest, images, metadata, splits, stats, release)


class DefaultsShown(argparse.HelpFormatter):
    """Each option's default at the end of its help, unless the help already says it or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            action.option_strings
            and not _no_default(action.default)
            and "default" not in text
            and "%(default)" not in text
        ):
            text = f"{text} (default: %(default)s)".strip()
        return text


def _no_default(default) -> bool:
    """None, a switch's False, or suppressed: nothing to show (0 is a default: ``--seed``'s)."""
    return default is None or default is False or default == argparse.SUPPRESS


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command's help names each option's default, the options without a help text too (`sample
    --records` showed neither what it does nor its 300)."""
    parser.formatter_class = DefaultsShown
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _show_defaults(child)
        elif action.help is None and action.option_strings and not _no_default(action.default):
            action.help = "(default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bioscan-rebuild", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an input error")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    _show_defaults(parser)
    return parser


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _arrow_input_error(error: Exception) -> bool:
    """Arrow refusing a file given as a table (not Parquet, other columns): the command was handed a wrong file."""
    return type(error).__module__ == "pyarrow.lib" and type(error).__name__ in ("ArrowInvalid", "ArrowTypeError")


def _disk_full(error: OSError) -> bool:
    # Arrow's writers raise OSError without an errno; the C library's message is in the text
    return error.errno in DISK_FULL or any(os.strerror(code) in str(error) for code in DISK_FULL)


def _file_problem(error: OSError) -> str:
    """One line for a file the command could not read or write, saying what a person can do."""
    name = error.filename
    if _disk_full(error):
        where = f"{name}: " if name else ""
        return f"{where}out of disk space ({error}): free space where the outputs go, then run again"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"{name}: {error.strerror}: give this user access to it, then run again"
    if error.errno == errno.ENOENT:
        return f"{name}: no such file or folder: check the path"
    return f"{name}: {error.strerror}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as error:  # a person's to fix: one line, no traceback
        if args.debug:
            raise
        print(f"bioscan-rebuild: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file it cannot read or write, or a full disk: one line too
        if isinstance(error, FileNotFoundError) and error.filename is None and len(error.args) == 1:
            error.filename, error.errno = error.args[0], errno.ENOENT  # pyarrow names only the path
        if isinstance(error, FileNotFoundError) and error.filename is None and error.strerror and not args.debug:
            # pyarrow.fs: (errno, "Failed to open local file 'x.parquet'. Detail: ...") names the file in its text
            print(f"bioscan-rebuild: error: {error.strerror}", file=sys.stderr)
            return 2
        if args.debug or (error.filename is None and not _disk_full(error)):
            raise
        print(f"bioscan-rebuild: error: {_file_problem(error)}", file=sys.stderr)
        return 1 if _disk_full(error) else 2
    except AccountingError as error:  # the run lost or double-counted something: stop before anything is released
        if args.debug:
            raise
        print(f"bioscan-rebuild: accounting does not balance: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        if args.debug or not _arrow_input_error(error):
            raise
        first = str(error).strip().splitlines()[0]
        print(
            f"bioscan-rebuild: error: cannot read an input table ({first}): check the file given",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
