"""An independent oracle for the TPM 2.0 decoder: tpmstream (PyPI, BSD-2), message by message.

For every TPM 2.0 message of the corpus and the recordings, tpmstream decodes
the bytes on its own (responses with the command code the plugin paired
them with); every value it gives must be the value of the plugin's field of
the same member name, in the same order. Normalized, not judged:

* tpmstream shows a TPM2B's bytes as ``buffer[i]`` events: joined, and named
  after the TPM2B (as the plugin's ``tpm2.<member>``);
* the plugin decodes the structures inside TPM2B_ATTEST and TPM2B_TEMPLATE
  (Part 2 says what they hold), tpmstream shows their bytes: the bytes must
  be the same;
* Part 1's ``authorizationSize`` is tpmstream's ``authSize``.

Not compared: parameters a session encrypts (tpm2.encrypted: tpmstream would
decode the ciphertext as if it were the structure). Where tpmstream warns,
the values are still compared; its warnings on TPM_PT 0x10A..0x12E ("not in
ValidValues(TPM_PT)") are its table's gap: Part 2 defines those properties
(TPM_PT_VENDOR_TPM_TYPE, TPM_PT_FIRMWARE_VERSION_1, ...), as the plugin names them.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import CorpusLog, write_pcapng

from luatshark import LUA, Message, clean_env, pdml_packets, tpm2_messages

tpmstream = pytest.importorskip("tpmstream", reason="tpmstream is in the test extras (./run-tests)")
from tpmstream.common.event import InfoEvent, MarshalEvent  # noqa: E402
from tpmstream.io.binary import Binary  # noqa: E402
from tpmstream.spec.commands import Command, Response  # noqa: E402
from tpmstream.spec.structures.constants import TPM_CC  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO / "tests" / "data" / "recordings"
ALIAS = {"authSize": "authorizationSize"}
#: derived fields of the plugin (no member of the specification): not compared
DERIVED = re.compile(r"^tpm2\.(TPMA_\w+\.|handle\.type$|pcr$|rc\.|command$)")
GAP = re.compile(r"Parsed bad value for TPM_PT \S+ = 0x([0-9a-f]+) = \d+ not in ValidValues\(TPM_PT\)")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return clean_env(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def ftypes(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(["tshark", "-G", "fields", *LUA], env=env, capture_output=True, text=True,
                         timeout=120).stdout
    return {c[2]: c[3] for c in (line.split("\t") for line in out.splitlines()) if len(c) > 3 and c[0] == "F"}


def theirs(msg: Message, command: int | None, is_request: bool) -> tuple[list[tuple[str, object]], list[str]]:
    """tpmstream's leaf values, in order, and its warnings."""
    kw = {"buffer": msg.data, "abort_on_error": False}
    events = list(Binary.marshal(tpm_type=Command, **kw) if is_request
                  else Binary.marshal(tpm_type=Response, command_code=TPM_CC(command), **kw))
    warnings = [str(e) for e in events if isinstance(e, InfoEvent)]
    out: list[tuple[str, object]] = []
    array: list | None = None  # [path, values, the entry before]

    def flush() -> None:
        path, values, before = array  # type: ignore[misc]
        parts = path.split(".")
        name = parts[-2] if before == ("size", len(values)) else parts[-1]  # a TPM2B's buffer
        out.append((re.sub(r"\[\d+\]$", "", name), bytes(values)))

    for e in events:
        if not isinstance(e, MarshalEvent) or e.value is ...:
            continue
        path = str(e.path)
        m = re.match(r"^(.*)\[(\d+)\]$", path)
        if m and e.type.__name__ in ("BYTE", "UINT8"):
            if array and array[0] == m.group(1):
                array[1].append(int(e.value))
                continue
            if array:
                flush()
            array = [m.group(1), [int(e.value)], out[-1] if out else None]
            continue
        if array:
            flush()
            array = None
        name = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])
        out.append((ALIAS.get(name, name), int(e.value)))
    if array:
        flush()
    return out, warnings


def ours(msg: Message, ftypes: dict[str, str]) -> tuple[list[tuple[str, object, int, int]], dict[str, tuple[int, int]]]:
    """The plugin's values (name, value, offset, size) in order, and its containers by name."""
    values, containers = [], {}
    for f in msg.fields:
        name, size, ftype = f.get("name", ""), int(f.get("size", "0")), ftypes.get(f.get("name", ""))
        pos = int(f.get("pos", "0")) - msg.pos
        short = name[len("tpm2."):].split(".")[0]
        if ftype == "FT_NONE":
            containers[short] = (pos, size)
            continue
        if DERIVED.match(name) or size == 0:
            continue
        if ftype == "FT_BYTES":
            values.append((short, bytes.fromhex(f.get("value", "")), pos, size))
        else:
            show = f.get("show", "")
            value = int(show) if re.fullmatch(r"-?\d+", show) else int(f.get("value", "0"), 16)
            values.append((short, value, pos, size))
    return values, containers


def agree(o, containers, t, data: bytes) -> tuple[bool, object]:
    i = j = 0
    while i < len(o) and j < len(t):
        (on, ov, _, _), (tn, tv) = o[i], t[j]
        if (on, ov) == (tn, tv):
            i += 1
            j += 1
            continue
        if isinstance(tv, bytes) and tn in containers:  # TPM2B_ATTEST / TPM2B_TEMPLATE
            start, size = containers[tn]
            if data[start + 2:start + size] == tv:
                while i < len(o) and o[i][2] < start + size:
                    i += 1
                j += 1
                continue
        return False, (o[max(0, i - 2):i + 2], t[max(0, j - 2):j + 2])
    return (i, j) == (len(o), len(t)), (o[i:i + 2], t[j:j + 2])


def check(env, ftypes, pcap: Path) -> Counter[str]:
    stats: Counter[str] = Counter()
    for msg in tpm2_messages(pdml_packets(env, pcap)):
        is_request = 'name="tpm2.commandCode"' in msg.text
        cc = re.search(r'name="swtpm.cc"[^>]*show="(0x[0-9a-f]+)"', msg.text)
        if not is_request and cc is None:
            continue
        if 'name="tpm2.encrypted"' in msg.text:
            stats["encrypted: not compared"] += 1
            continue
        t, warnings = theirs(msg, int(cc.group(1), 16) if cc else None, is_request)
        gaps = [int(m.group(1), 16) for w in warnings for m in [GAP.search(w)] if m]
        others = [w for w in warnings if not GAP.search(w)]
        # its other complaints are about values, never about the layout: the values
        # must agree all the same (e.g. transient handle 0x80ffffff, outside its profile)
        assert all("Parsed bad value" in w for w in others), (msg.frame, others)
        if others:
            stats["tpmstream's value warnings"] += 1
        if gaps:
            stats["tpmstream's TPM_PT gap"] += 1
            for pt in gaps:  # the specification's names, which the plugin shows
                assert f'show="0x{pt:08x}"' in msg.text and "TPM_PT_" in msg.text
        o, containers = ours(msg, ftypes)
        ok, where = agree(o, containers, t, msg.data)
        assert ok, (msg.frame, where)
        stats["agree"] += 1
    return stats


def test_tpmstream_agrees_on_the_corpus(corpus_log: CorpusLog, converted, env, ftypes) -> None:
    stats = check(env, ftypes, converted(corpus_log))
    if corpus_log.truth["tpm_version"] == "2.0":
        assert stats["agree"] > 50


@pytest.mark.parametrize("name", ["ovmf-secboot-proxmox-swtpm.log", "tpm2-tools-session-swtpm.log"])
def test_tpmstream_agrees_on_the_recordings(name: str, tmp_path: Path, env, ftypes) -> None:
    pcap = write_pcapng((RECORDINGS / name).read_bytes(), tmp_path / "r.pcapng", start_us=1_700_000_000_000_000)
    stats = check(env, ftypes, pcap)
    assert stats["agree"] >= 200
    if name.startswith("tpm2-tools"):
        assert stats["agree"] >= 1700 and stats["encrypted: not compared"] <= 5


def test_tpmstream_agrees_on_the_client_capture(env, ftypes) -> None:
    stats = check(env, ftypes, RECORDINGS / "tpm2-tools-session-client.pcapng")
    assert stats["agree"] >= 1700
