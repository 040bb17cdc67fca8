"""The few failures a user must see: one line on stderr, a non-zero exit."""

from __future__ import annotations

import os
import sys

PROG = "swtpm-extcap"
#: the package's logger: every module logs below it (``--log-file`` writes it out)
LOGGER = "swtpm_extcap"


class UserError(Exception):
    """A failure the user can fix; its message says what was wrong and how to fix it."""

    exit_code = 1


class ConfigError(UserError):
    """The settings file exists but cannot be used; the message names file and key."""


class UsageError(UserError):
    """Bad command-line arguments or options."""

    exit_code = 2


class Stopped(BaseException):
    """A stop signal came, but the capture did not end within the grace time
    (raised by :mod:`swtpm_extcap.extcap.signals`' timer): a clean stop all the same."""


def printable(text: str | os.PathLike[str]) -> str:
    """``text`` safe to print and to store as UTF-8: a byte of a file name that is
    not UTF-8 (held as a lone surrogate, Python's ``surrogateescape``) becomes
    ``\\xff``; a lone surrogate that is no such byte becomes ``\\udc..``."""
    text = os.fspath(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape" if _only_escaped_bytes(text) else "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")


def _only_escaped_bytes(text: str) -> bool:
    return all(not 0xD800 <= ord(ch) <= 0xDFFF or 0xDC80 <= ord(ch) <= 0xDCFF for ch in text)


def reason(exc: OSError) -> str:
    """What the OS said, e.g. ``No space left on device``."""
    return exc.strerror or str(exc) or type(exc).__name__


#: the longest message an error line or a listing field carries (a 1 MB key in a
#: settings file must not make a 1 MB line in Wireshark's dialog or interface list)
MAX_MESSAGE = 1000


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` of at most ``limit`` characters: longer, its start and end with
    ``...(N characters left out)...`` between them (how to fix it is often at the end)."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit + 40  # room for the marker
    head = (limit - 40) * 2 // 3
    return f"{text[:head]}...({cut} characters left out)...{text[head + cut:]}"


def error_line(exc: UserError) -> str:
    """The one stderr line of a user error (at most :data:`MAX_MESSAGE` characters of it)."""
    return f"{PROG}: {clip(printable(str(exc)))}\n"


def say(line: str) -> None:
    """Write one line to stderr, if there is a stderr."""
    err = sys.stderr
    if err is None:
        return
    try:
        err.write(line)
        err.flush()
    except (OSError, ValueError):
        pass


def silence_stdout() -> None:
    """After a failed write to stdout: point it at /dev/null, so that Python's
    flush at exit does not print a second error."""
    out = sys.stdout
    if out is None:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def route_warnings() -> None:
    """Python warnings (a dependency's ``DeprecationWarning`` at import, say) go to the
    debug log, never to stderr: Wireshark shows whatever an extcap writes there as an
    error dialog, and cuts it short, so the one line that matters would be lost."""
    import warnings

    warnings.showwarning = _log_warning


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    import logging

    base = logging.getLogger(LOGGER)
    if not base.handlers:  # else logging's "last resort" would print it on stderr
        base.addHandler(logging.NullHandler())
    logging.getLogger(LOGGER + ".warnings").info(
        "%s:%s: %s: %s", filename, lineno, category.__name__, message
    )
