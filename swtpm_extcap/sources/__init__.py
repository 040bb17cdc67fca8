"""Where log bytes come from: a :class:`LogLocation` names a log, :func:`open_source`
gives the :class:`~swtpm_extcap.sources.base.Source` that reads it.

The capture engine knows nothing but :class:`~swtpm_extcap.sources.base.Source`:
a local file (:mod:`.local`) is the first implementation; a log on an SSH host
is the second (its branch in :func:`open_source`). Nothing heavy is imported
here: discovery uses :class:`LogLocation` while listing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..remote.ssh import SSHParams
    from .base import Source

__all__ = ["LogLocation", "open_source"]


@dataclass(frozen=True)
class LogLocation:
    """Where one swtpm log is: a path on this machine, or on ``host``."""

    #: the log's path on its host
    path: str
    #: None: this machine; else the SSH destination that holds the log (``[user@]host``)
    host: str | None = None
    #: how to log in to ``host`` (port, user, key, password, sudo); None: as ~/.ssh/config says
    ssh: SSHParams | None = field(default=None, compare=False)

    @property
    def is_local(self) -> bool:
        return self.host is None

    def __str__(self) -> str:
        """How messages name the log: a path, or ``host:path``."""
        return self.path if self.host is None else f"{self.host}:{self.path}"


def open_source(location: LogLocation) -> Source:
    """The :class:`Source` that reads the log at ``location``; opens nothing yet."""
    if location.is_local:
        from .local import LocalFile

        return LocalFile(location.path)
    from ..remote.ssh import SSHParams
    from .ssh import SSHSource

    return SSHSource(location.ssh or SSHParams(str(location.host)), location.path)
