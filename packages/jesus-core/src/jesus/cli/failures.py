"""How a command's failure reaches the person who ran it: one `jesus: …` line (and the fields
at fault, for a message a schema refused), the traceback only under `jesus -v`."""

from __future__ import annotations

import asyncio
import errno
import sys
import traceback
from typing import Any, TextIO

from jesus.errors import CallError, JesusError


class UsageError(JesusError):
    """What was typed cannot be run (exit status 2, as argparse's own refusals)."""


def meaningful(exc: BaseException) -> BaseException:
    """The error an exception group stands for: its leaf that says most (a jesus error, then
    an OS error, then anything but a cancellation), found depth first."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = list(_leaves(exc))
    for kind in (JesusError, OSError, Exception, BaseException):
        for leaf in leaves:
            if isinstance(leaf, kind) and not _is_cancellation(leaf):
                return leaf
    return leaves[0] if leaves else exc


def _leaves(exc: BaseException) -> Any:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.CancelledError):
        return True
    trio = sys.modules.get("trio")  # loaded only when it runs
    return trio is not None and isinstance(exc, trio.Cancelled)


def explain(exc: BaseException) -> list[str]:
    """The lines that say what went wrong, the first one whole on its own."""
    if isinstance(exc, CallError):
        return [str(exc), *detail_lines(exc)]
    if isinstance(exc, JesusError):
        return [str(exc)]
    if isinstance(exc, OSError):
        return [_os_error(exc)]
    return [f"{type(exc).__name__}: {exc} (jesus -v ... shows the traceback)"]


def detail_lines(exc: BaseException) -> list[str]:
    details = getattr(exc, "details", None)
    if not details:
        return []
    return [f"    {line}" for line in (details if isinstance(details, list) else [details])]


def _os_error(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"{exc.filename}: {what}"
    if exc.errno == errno.EADDRINUSE:
        return f"{what}: another process listens there"
    return what


def report(exc: BaseException, verbose: bool, out: TextIO | None = None) -> int:
    """Print why a command failed; returns its exit status."""
    out = out or sys.stderr
    if verbose:
        traceback.print_exception(exc, file=out)
    found = meaningful(exc)
    if isinstance(found, KeyboardInterrupt):
        return 130
    lines = explain(found)
    print(f"jesus: {lines[0]}", file=out)
    for line in lines[1:]:
        print(line, file=out)
    return 2 if isinstance(found, UsageError) else 1
