"""``swtpm-extcap convert``: swtpm logs -> pcapng files (the file I/O edge)."""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from .errors import UserError
from .pipeline import Pipeline, Summary

CHUNK = 1 << 20
PROGRESS_MIN_BYTES = 16 << 20


@dataclass(frozen=True)
class ConvertSettings:
    logs: tuple[str, ...]
    output: str | None
    ctrl: bool = True
    start_time: float | None = None
    strict: bool = False


def default_output(log: str) -> str:
    """``/x/103-swtpm.log`` -> ``/x/103-swtpm.pcapng``; ``-`` (stdin) -> ``-`` (stdout)."""
    if log == "-":
        return "-"
    path = Path(log)
    return str(path.with_suffix(".pcapng") if path.suffix == ".log" else Path(log + ".pcapng"))


def check_inputs(logs: Sequence[str]) -> None:
    """Fail before writing anything when an input cannot be read."""
    for log in logs:
        if log == "-":
            continue
        try:
            with open(log, "rb"):
                pass
        except IsADirectoryError:
            raise UserError(f"{log} is a directory; give the swtpm log file inside it") from None
        except FileNotFoundError:
            raise UserError(f"{log}: no such file; check the path of the swtpm log") from None
        except PermissionError:
            raise UserError(
                f"{log}: permission denied; run as root or copy the log somewhere readable"
            ) from None
        except OSError as exc:
            raise UserError(f"{log}: cannot read: {exc.strerror}") from None


def convert_stream(
    src: BinaryIO,
    out: BinaryIO,
    *,
    name: str,
    start_us: int,
    ctrl: bool = True,
    size: int = 0,
    progress: TextIO | None = None,
) -> Summary:
    """Convert one log stream into one pcapng section written to ``out``."""
    pipe = Pipeline(
        out,
        live=_is_stream(out),
        name=f"swtpm:{name}",
        description=f"swtpm log {name}",
        start_us=start_us,
        ctrl=ctrl,
        comment=f"converted from swtpm log {name}",
    )
    done = 0
    shown = 0.0
    began = time.monotonic()
    # read1: what a pipe has now, so `tail -F log | swtpm-extcap convert - -o -`
    # streams; on a file it reads CHUNK bytes all the same
    read = getattr(src, "read1", src.read)
    while chunk := read(CHUNK):
        pipe.feed(chunk)
        if progress is not None:
            done += len(chunk)
            now = time.monotonic()
            if now - shown >= 0.2:
                shown = now
                _show_progress(progress, name, done, size, now - began)
    if progress is not None:
        progress.write("\r\033[K")
        progress.flush()
    return pipe.close()


def _is_stream(out: BinaryIO) -> bool:
    """A pipe, fifo or socket: flush after every batch so a reader sees frames at once."""
    try:
        mode = os.fstat(out.fileno()).st_mode
    except (OSError, ValueError, AttributeError):  # BytesIO and the like
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _show_progress(stream: TextIO, name: str, done: int, size: int, secs: float) -> None:
    frac = min(done / size, 1.0) if size else 0.0
    bar = "#" * int(frac * 30)
    rate = done / secs / 1e6 if secs > 0 else 0.0
    stream.write(
        f"\r{name} [{bar:<30}] {frac:4.0%} {done / 1e6:.0f}/{size / 1e6:.0f} MB {rate:.0f} MB/s"
    )
    stream.flush()


def run_convert(settings: ConvertSettings, stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO) -> int:
    check_inputs(settings.logs)
    shared = settings.output
    dests = [shared or default_output(log) for log in settings.logs]
    if "-" in dests and stdout.isatty():
        raise UserError("refusing to write pcapng to a terminal; use -o FILE or a pipe")
    defects = 0
    out: BinaryIO | None = None
    try:
        if shared is not None:
            out = stdout if shared == "-" else open(shared, "wb")
        for log, dest in zip(settings.logs, dests):
            if out is not None:
                summary = _convert_one(log, out, settings, stdin, stderr)
            elif dest == "-":
                summary = _convert_one(log, stdout, settings, stdin, stderr)
            else:
                with open(dest, "wb") as target:
                    summary = _convert_one(log, target, settings, stdin, stderr)
            defects += len(summary.defects)
            for line in summary.report(f"{log} -> {'stdout' if dest == '-' else dest}"):
                stderr.write(line + "\n")
    finally:
        if out is not None and out is not stdout:
            out.close()
        else:
            stdout.flush()
    return 3 if settings.strict and defects else 0


def _convert_one(
    log: str, out: BinaryIO, settings: ConvertSettings, stdin: BinaryIO, stderr: TextIO
) -> Summary:
    start = settings.start_time
    if log == "-":
        anchor = time.time() if start is None else start
        return convert_stream(stdin, out, name="stdin", start_us=int(anchor * 1e6), ctrl=settings.ctrl)
    with open(log, "rb") as src:
        st = os.fstat(src.fileno())
        anchor = st.st_mtime if start is None else start
        progress = stderr if st.st_size >= PROGRESS_MIN_BYTES and stderr.isatty() else None
        return convert_stream(
            src,
            out,
            name=os.path.basename(log),
            start_us=int(anchor * 1e6),
            ctrl=settings.ctrl,
            size=st.st_size,
            progress=progress,
        )


def convert_main(settings: ConvertSettings) -> int:
    return run_convert(settings, sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
