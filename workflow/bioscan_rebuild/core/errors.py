"""Errors a person can act on."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input that a person can fix (a file, a config value). The command line prints its message as one line
    naming the file and the fix, and exits 2, without a traceback (``bioscan-rebuild --debug`` shows it)."""


class AccountingError(RuntimeError):
    """A run whose counts do not balance (a record or photo lost or counted twice between stages). The command
    line prints the message as one line and exits 1: the run is wrong and must not be released."""
