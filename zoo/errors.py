"""The one error type the command line prints as a single line, and the one way it stops.

A :class:`ZooError` is a problem with the user's input; its message names what was wrong and
what to do, on one line. :func:`fail` is the single exit policy for such a problem, used by the
command line and by the parts of a sweep that run outside its handler: ``error: <message>`` on
stderr and exit status 2, or the full traceback when ``HYDRA_FULL_ERROR=1``.
"""

from __future__ import annotations

import os
import sys


class ZooError(Exception):
    """A problem with the user's input: a config value, a name, a plugin, a file, a run id.

    The message names what was wrong and what to do, on one line.
    """


class ConfigError(ZooError):
    """A config value is invalid. Raised before any run is created."""

    def __init__(self, key: str, value, expected: str):
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key}={'null' if value is None else shown(value)} is invalid: expected {expected}")


def shown(value, limit: int = 80) -> str:
    """``repr(value)``, cut to about ``limit`` characters (saying how long it was) so an error stays one short line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters as text"
    return f"{text[:limit - 20]}... ({size})"


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first line of an exception's message (its type's name when it has none), at most ``limit`` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."


def full_errors() -> bool:
    """Whether the user asked for tracebacks (``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get("HYDRA_FULL_ERROR", "") not in ("", "0")


def fail(msg: str, code: int = 2):
    """Stop the command: ``error: <msg>`` on one line and exit ``code``; with ``HYDRA_FULL_ERROR=1`` raise instead."""
    if full_errors():
        raise ZooError(msg)
    # one line, whatever the message echoes back (a newline typed into an override, say)
    msg = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(msg))
    print(f"error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(code)
