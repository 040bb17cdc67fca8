"""The few OpenSSH client settings that asyncssh does not act on for us, read as OpenSSH does.

asyncssh applies ``~/.ssh/config`` itself (HostName, Port, User,
IdentityFile, ProxyJump, UserKnownHostsFile, HostKeyAlias). What it ignores,
and we need, is read here: ``CheckHostIP`` (whether a host key is also
checked against the address's entry), and the ``IdentityFile`` list (to say
that a key is encrypted and no agent holds it). Semantics of ``ssh_config(5)``:
the file is read top to bottom, a ``Host`` line's patterns (``*``, ``?``,
``!negation``) are matched against the name the user gave, and for each
option the first value found wins (``IdentityFile`` accumulates). ``Match``
blocks are skipped (treated as not matching), ``Include`` is not followed.
"""

from __future__ import annotations

import fnmatch
import os
import shlex

#: asyncssh's default client config (it reads no system-wide file)
DEFAULT_CONFIG = "~/.ssh/config"


def _host_matches(patterns: list[str], host: str) -> bool:
    hit = False
    for pat in patterns:
        negated = pat.startswith("!")
        if fnmatch.fnmatchcase(host.lower(), pat.lstrip("!").lower()):
            if negated:
                return False
            hit = True
    return hit


def config_values(path: str | None, host: str, option: str) -> list[str]:
    """Every value of ``option`` that applies to ``host`` in the config at ``path``, in order
    (the first is the one OpenSSH uses for single-valued options); [] if unreadable."""
    try:
        with open(os.path.expanduser(path or DEFAULT_CONFIG), encoding="utf-8",
                  errors="replace") as fh:
            lines = fh.read(1 << 20).splitlines()
    except OSError:
        return []
    want = option.lower()
    active = True
    out: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, rest = line.replace("=", " ", 1).partition(" ")
        key = key.lower()
        try:
            words = shlex.split(rest.strip(), comments=True)
        except ValueError:
            continue
        if key == "host":
            active = _host_matches(words, host)
        elif key == "match":
            active = False
        elif active and key == want and words:
            out.append(" ".join(words))
    return out


def check_host_ip(path: str | None, host: str) -> bool:
    """``CheckHostIP`` for ``host`` (OpenSSH's default since 8.5: no)."""
    values = config_values(path, host, "CheckHostIP")
    return bool(values) and values[0].lower() in ("yes", "true")


def identity_files(path: str | None, host: str) -> list[str]:
    """The ``IdentityFile`` entries for ``host``, ``~`` and ``%d`` expanded (others left)."""
    home = os.path.expanduser("~")
    return [os.path.expanduser(v.replace("%d", home)) for v in config_values(path, host, "IdentityFile")]
