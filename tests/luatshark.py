"""The Lua plugin in a real tshark, for the tests of swtpm_extcap/wireshark/ (test_lua*.py).

Plain helpers, no fixtures:

* :func:`clean_env`: an environment whose ``$HOME`` holds no Wireshark plugin,
  profile or preference: every tshark a test starts gets one of its own;
* :func:`tshark`: runs tshark with the plugin (``-X lua_script:``), no TCP
  reassembly, fails on a non-zero exit and on any Lua error it prints;
* :func:`messages_pcapng`: a capture of TPM messages made here (requests from
  port 50000 to 2321 and responses back, one TCP segment each), for messages no
  log has: damaged ones, examples of the specification;
* :func:`pdml_packets`: the PDML of a capture, packet by packet (ElementTree);
* :func:`tpm2_messages`: from that, each TPM 2.0 message's bytes and fields.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "swtpm_extcap" / "wireshark" / "swtpm.lua"
LUA = ("-X", f"lua_script:{PLUGIN}")
#: each TCP segment on its own, no heuristics, no name lookups (as conftest.TSHARK_RAW)
RAW = ("-n", "-o", "tcp.desegment_tcp_streams:FALSE", "-o", "tcp.reassemble_out_of_order:FALSE",
       "-o", "tcp.try_heuristic_first:FALSE", "-o", "ip.defragment:FALSE")
TPM_PORT = 2321
CLIENT_PORT = 50000


def clean_env(home: Path) -> dict[str, str]:
    """The environment for tshark with ``home`` as an empty ``$HOME``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "WIRESHARK"))}
    env["HOME"] = str(home)
    return env


def tshark(env: dict[str, str], *args: str, plugin: bool = True, timeout: float = 600) -> str:
    """tshark's stdout; a non-zero exit or a Lua error on stderr fails the test."""
    if shutil.which("tshark") is None:
        raise AssertionError("tshark not on PATH (./run-tests installs it)")
    argv = ["tshark", *RAW, *(LUA if plugin else ()), *args]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (argv, proc.stderr[-3000:])
    assert "Lua" not in proc.stderr, proc.stderr[-3000:]
    return proc.stdout


def messages_pcapng(path: Path, messages: Sequence[bytes | tuple[bool, bytes]],
                    comments: Sequence[str] | None = None, port: int = CLIENT_PORT) -> Path:
    """A capture of TPM messages: alternately request and response unless given as
    ``(is_request, bytes)``; one frame each, 1 ms apart; optional frame comments."""
    from swtpm_extcap.pcapng import writer as pcapng
    from swtpm_extcap.pcapng.tcp import build_frame

    frames = []
    seq = {True: 1, False: 1}
    for i, item in enumerate(messages):
        is_request, data = item if isinstance(item, tuple) else (i % 2 == 0, item)
        sport, dport = (port, TPM_PORT) if is_request else (TPM_PORT, port)
        frame = build_frame(sport, dport, seq[is_request], seq[not is_request], 0x18, data,
                            run=0, line=i + 1)
        seq[is_request] += len(data)
        comment = comments[i] if comments and i < len(comments) else ""
        frames.append((1_700_000_000_000_000 + i * 1000, frame, comment))
    path.write_bytes(pcapng.section_header("test") + pcapng.interface_description("swtpm:test", "test")
                     + bytes(pcapng.encode_packets(frames)))
    return path


def pdml_packets(env: dict[str, str], pcap: Path, *extra: str) -> list[ET.Element]:
    """The capture's PDML packets (two passes: links known both ways)."""
    out = tshark(env, "-2", *extra, "-r", str(pcap), "-T", "pdml")
    return ET.fromstring(out).findall("packet")


def fields_of(element: ET.Element) -> Iterator[ET.Element]:
    """Every <field> below element, depth first."""
    for child in element:
        if child.tag == "field":
            yield child
            yield from fields_of(child)
        elif child.tag == "proto":
            yield from fields_of(child)


@dataclass
class Message:
    """A TPM 2.0 message as the plugin decoded it."""

    frame: int
    data: bytes
    pos: int  # where the message starts in the frame
    fields: list[ET.Element] = field(default_factory=list)  # the tpm2.* fields
    names: set[str] = field(default_factory=set)  # every field name of the packet
    text: str = ""  # the whole packet's PDML

    def leaves(self) -> list[tuple[str, int, int, str]]:
        """(name, offset in the message, size, value hex) of the fields with a value."""
        out = []
        for f in self.fields:
            value = f.get("value")
            size = int(f.get("size", "0"))
            if value is None or size == 0:
                continue
            out.append((f.get("name", ""), int(f.get("pos", "0")) - self.pos, size, value))
        return out


def tpm2_messages(packets: list[ET.Element]) -> list[Message]:
    """The TPM 2.0 messages of the capture (frames with a "tpm2" protocol)."""
    out = []
    for packet in packets:
        proto = next((p for p in packet.findall("proto") if p.get("name") == "tpm2"), None)
        if proto is None:
            continue
        tcp = next(p for p in packet.findall("proto") if p.get("name") == "tcp")
        payload = next((f for f in fields_of(tcp) if f.get("name") == "tcp.payload"), None)
        data = bytes.fromhex(payload.get("value", "")) if payload is not None else b""
        frame = int(next(f for f in fields_of(packet) if f.get("name") == "frame.number").get("show", "0"))
        all_fields = list(fields_of(packet))
        msg = Message(frame=frame, data=data, pos=int(proto.get("pos", "0")),
                      fields=[f for f in fields_of(proto) if f.get("name", "").startswith("tpm2.")],
                      names={f.get("name", "") for f in all_fields} | {p.get("name", "") for p in packet.iter("proto")},
                      text=ET.tostring(packet, encoding="unicode"))
        out.append(msg)
    return out
