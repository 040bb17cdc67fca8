"""The one clock policy, for ``convert`` and the capture alike.

A swtpm log has no timestamps. A run with an ``[id=<epoch>]`` prefix starts at
that epoch (:mod:`swtpm_extcap.pcapng.frames`); every frame then advances 1 ms. For
records without a prefix the clock starts at :func:`backlog_start_us`: the
log is laid out to end no later than the file's modification time, counting
back one millisecond for every :data:`BYTES_PER_MS` bytes of log (more than
the bytes can hold in frames), so that records appended later, stamped with
the wall clock (:func:`now_us`), come after it. A log with no file behind it
(stdin) starts now. README "Timestamps" says the same for users.
"""

from __future__ import annotations

import time

#: the fewest log bytes one frame takes (a header line and a hex line): 1 ms each
BYTES_PER_MS = 32


def backlog_start_us(mtime: float, size: int) -> int:
    """Where the clock starts for ``size`` bytes of log last written at ``mtime``."""
    return int(mtime * 1_000_000) - (size // BYTES_PER_MS) * 1000


def now_us() -> int:
    """The wall clock in microseconds: the timestamp of a live record."""
    return time.time_ns() // 1000
