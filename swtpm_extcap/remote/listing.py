"""The ``[[remote]]`` hosts in the interface list: cached, asked in parallel, failures shown.

:func:`list_remotes` never fails and prints nothing: hosts whose cached answer
is fresh (:data:`CACHE_TTL_S`) are not asked, and then nothing of asyncssh is
imported (Wireshark lists interfaces often: a warm listing costs what one
without remotes costs); the others are asked in parallel, each for at most
``timeout`` seconds. A host that fails is an entry of its own,
``swtpm-<name>--error`` (:func:`error_interface`), whose display says why
(Wireshark never shows what a listing prints); its last VMs stay listed.
:func:`find_remote_vm` resolves a name for a capture: a failing host's entry
fails with the same line, a VM the cache knows is captured (the capture then
says why it cannot connect), an unknown one is looked for on the host, within
the entry's connect timeout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import UserError
from ..names import PREFIX
from .settings import Remote, RemoteVM

#: seconds a cached listing of a host is used without asking it again
CACHE_TTL_S = 45.0
#: at most this long per host while listing (they are asked in parallel)
LIST_TIMEOUT_S = 2.0
#: how a failing host's entry ends (a VM key never starts with "-")
ERROR_SUFFIX = "--error"


def error_interface(remote: Remote) -> str:
    """The listing entry that says why ``remote`` could not be asked."""
    return f"{PREFIX}{remote.name}{ERROR_SUFFIX}"


class Failure(NamedTuple):
    """A host that could not be asked: its entry in the list, and the one line why.
    (NamedTuples here: a warm listing builds no dataclass it can do without, see bench_ssh.py.)"""

    interface: str
    remote: str
    message: str

    @property
    def display(self) -> str:
        return f"SWTPM {self.remote} error: {self.message}"


class Listing(NamedTuple):
    """What the ``[[remote]]`` hosts add to the interface list."""

    vms: tuple[RemoteVM, ...] = ()
    failures: tuple[Failure, ...] = ()


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/swtpm-extcap``, else ``~/.cache/swtpm-extcap`` (Windows: %LOCALAPPDATA%)."""
    env = os.environ if environ is None else environ
    if sys.platform == "win32" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "swtpm-extcap" / "cache"
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "swtpm-extcap"
    home = env.get("HOME") or env.get("USERPROFILE")
    return (Path(home) if home else Path.home()) / ".cache" / "swtpm-extcap"


def _cache_key(remote: Remote) -> str:
    """The entry's settings: a cached answer counts only for the same ones."""
    return repr(remote)


class _Cached(NamedTuple):
    time: float
    ok: bool
    vms: list[RemoteVM]
    error: str = ""


def _read_cache(folder: Path, remote: Remote) -> _Cached | None:
    try:
        doc = json.loads((folder / f"remote-{remote.name}.json").read_text())
        if doc.get("key") != _cache_key(remote):
            return None
        return _Cached(float(doc["time"]), bool(doc["ok"]), [RemoteVM(**v) for v in doc["vms"]],
                       str(doc.get("error", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(folder: Path, remote: Remote, cached: _Cached) -> None:
    doc = {"key": _cache_key(remote), "time": cached.time, "ok": cached.ok,
           "vms": [v._asdict() for v in cached.vms], "error": cached.error}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".remote-{remote.name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, folder / f"remote-{remote.name}.json")
    except OSError:
        pass


def list_remotes(
    remotes: Sequence[Remote],
    *,
    timeout: float = LIST_TIMEOUT_S,
    ttl: float = CACHE_TTL_S,
    cache: Path | None = None,
    now: float | None = None,
) -> Listing:
    """Every remote host's interfaces and failures, from the cache or asked; never raises."""
    if not remotes:
        return Listing()
    folder = cache_dir() if cache is None else cache
    clock = time.time() if now is None else now
    cached = {r.name: _read_cache(folder, r) for r in remotes}
    stale = [r for r in remotes if (c := cached[r.name]) is None or not 0 <= clock - c.time < ttl]
    if stale:
        answers = _ask_all(stale, timeout)
        for remote in stale:
            answer = answers[remote.name]
            old = cached[remote.name]
            if isinstance(answer, list):
                entry = _Cached(clock, True, answer)
            else:  # keep the last listing; ask again after ttl
                entry = _Cached(clock, False, old.vms if old is not None else [], answer)
            cached[remote.name] = entry
            _write_cache(folder, remote, entry)
    vms: list[RemoteVM] = []
    failures: list[Failure] = []
    for remote in remotes:
        listed = cached[remote.name]
        if listed is None:
            continue
        vms.extend(listed.vms)
        if not listed.ok:
            failures.append(Failure(error_interface(remote), remote.name, listed.error))
    return Listing(tuple(vms), tuple(failures))


def _ask_all(remotes: Sequence[Remote], timeout: float) -> dict[str, list[RemoteVM] | str]:
    """Each host's VMs, or the one line why it could not be asked."""
    try:
        from .ssh import quiet_asyncssh, require_asyncssh

        require_asyncssh()
        quiet_asyncssh()
    except UserError as exc:
        return {r.name: str(exc) for r in remotes}

    import asyncio

    from .discovery import discover_remote

    async def one(remote: Remote) -> list[RemoteVM] | str:
        try:
            return await discover_remote(remote, timeout)
        except UserError as exc:
            return str(exc)
        except BaseException as exc:  # noqa: BLE001 - a listing never fails because of one host
            return f"discovery on {remote.params().where} failed: {type(exc).__name__}: {exc}"

    async def every() -> list[list[RemoteVM] | str]:
        return await asyncio.gather(*(one(r) for r in remotes))

    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, _context: None)
    try:
        answers = loop.run_until_complete(every())
    finally:
        loop.close()
    return {r.name: a for r, a in zip(remotes, answers)}


def find_remote_vm(
    interface: str, remotes: Sequence[Remote], *, cache: Path | None = None
) -> tuple[Remote, RemoteVM] | None:
    """The remote interface called ``interface``, for a capture.

    None when no ``[[remote]]`` name matches; :class:`UserError` with one line for
    a failing host's entry (the listing's line), or when the host cannot be asked
    or has no such log."""
    owners = [r for r in remotes if interface.startswith(f"{PREFIX}{r.name}-")]
    if not owners:
        return None
    owners.sort(key=lambda r: -len(r.name))  # "pve1-a" before "pve1"
    folder = cache_dir() if cache is None else cache
    for remote in owners:
        cached = _read_cache(folder, remote)
        if interface == error_interface(remote):
            if cached is not None and not cached.ok:
                raise UserError(cached.error)
            raise UserError(f"{remote.name} answers now: refresh the interface list"
                            " (Capture > Refresh Interfaces)")
        for vm in cached.vms if cached is not None else []:
            if vm.interface == interface:
                return remote, vm
    remote = owners[0]
    from .discovery import discover_remote
    from .ssh import Runner

    runner = Runner()  # its close() lets a discovery cut short by a stop signal end cleanly
    try:
        vms = runner.run(discover_remote(remote, remote.connect_timeout))
    finally:
        runner.close()
    _write_cache(folder, remote, _Cached(time.time(), True, vms))
    for vm in vms:
        if vm.interface == interface:
            return remote, vm
    raise UserError(
        f"no interface {interface}: {remote.params().where} has no such VM log (is the VM"
        " running, with a TPM?); `tshark -D | grep swtpm` lists the interfaces that exist"
    )
