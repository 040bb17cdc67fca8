"""Where log bytes come from: each source yields chunks of bytes and ends when its ``stop`` Event is set."""

from __future__ import annotations

from .follow import follow, read_once

__all__ = ["follow", "read_once"]
