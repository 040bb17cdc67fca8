"""The bundled demo log: its interface name, display text and file (defined here only)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

#: the interface Wireshark lists last, always there
DEMO_NAME = "swtpm-demo"
DEMO_DISPLAY = "SWTPM demo (bundled log of two VM boots)"
DEMO_FILE = "demo-swtpm.log"


def demo_log_path() -> Path:
    """The bundled demo log (package data), as a real file even from a zipped install."""
    beside = Path(__file__).parents[1] / "data" / DEMO_FILE
    if beside.is_file():  # checkout or unpacked wheel: skip importlib.resources (~4 ms)
        return beside
    from importlib.resources import files

    resource = files("swtpm_extcap") / "data" / DEMO_FILE
    if isinstance(resource, Path):
        return resource
    return _extracted(resource)  # pragma: no cover - zip imports only


_EXTRACTED: list[Path] = []


def _extracted(resource: Traversable) -> Path:  # pragma: no cover - zip imports only
    """Copy a resource out of a zip once per process (removed at exit)."""
    if not _EXTRACTED:
        import atexit
        import shutil
        import tempfile

        tmp = tempfile.mkdtemp(prefix="swtpm-extcap-")
        atexit.register(shutil.rmtree, tmp, True)
        target = Path(tmp) / DEMO_FILE
        target.write_bytes(resource.read_bytes())
        _EXTRACTED.append(target)
    return _EXTRACTED[0]
