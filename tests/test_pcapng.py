"""pcapng: the writer's blocks, read back three ways.

* an independent block walker written here from the pcapng spec
  (draft-ietf-opsawg-pcapng: SHB 0x0A0D0D0A with byte-order magic 0x1A2B3C4D,
  IDB type 1, EPB type 6, options as code/length/value padded to 32 bits,
  block total length repeated at the end);
* tshark (frame count, timestamps, comments);
* pyshark (PDML, no JSON): the TPM command and response codes Wireshark
  decodes equal the codes in the corpus truth.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from conftest import TPM_PORT, CorpusLog, cached_frames, corpus_log_paths, load_corpus_log, require_tshark
from swtpm_extcap.pcapng.frames import Framer
from swtpm_extcap.swtpmlog.parser import LogParser
from swtpm_extcap.pcapng.writer import PcapngWriter

Convert = Callable[..., Path]

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_ETHERNET = 1
OPT_ENDOFOPT, OPT_COMMENT = 0, 1
SHB_USERAPPL = 4
IF_NAME, IF_DESCRIPTION = 2, 3


# ------------------------------------------------------- a pcapng reader


@dataclass
class Packet:
    interface: int
    ts_us: int
    data: bytes
    options: dict[int, list[bytes]]

    @property
    def comment(self) -> str:
        return b"".join(self.options.get(OPT_COMMENT, [b""])[:1]).decode("utf-8")


@dataclass
class Section:
    options: dict[int, list[bytes]]
    interfaces: list[tuple[int, int, dict[int, list[bytes]]]] = field(default_factory=list)
    packets: list[Packet] = field(default_factory=list)


def _options(body: bytes) -> dict[int, list[bytes]]:
    opts: dict[int, list[bytes]] = {}
    pos = 0
    while pos < len(body):
        assert pos + 4 <= len(body), "truncated option header"
        code, length = struct.unpack_from("<HH", body, pos)
        pos += 4
        if code == OPT_ENDOFOPT:
            assert length == 0
            assert pos == len(body), "bytes after opt_endofopt"
            return opts
        value = body[pos : pos + length]
        assert len(value) == length, "truncated option value"
        pad = -length % 4
        assert body[pos + length : pos + length + pad] == bytes(pad), "option padding not zero"
        opts.setdefault(code, []).append(value)
        pos += length + pad
    # a comment-only EPB may end with or without opt_endofopt; anything else must end it
    return opts


def read_pcapng(data: bytes) -> list[Section]:
    sections: list[Section] = []
    pos = 0
    while pos < len(data):
        btype, total = struct.unpack_from("<II", data, pos)
        assert total % 4 == 0 and total >= 12, f"block at {pos}: total length {total}"
        assert pos + total <= len(data), f"block at {pos} runs past the end"
        (trailer,) = struct.unpack_from("<I", data, pos + total - 4)
        assert trailer == total, f"block at {pos}: trailing length {trailer} != {total}"
        body = data[pos + 8 : pos + total - 4]
        if btype == SHB:
            magic, major, minor, length = struct.unpack_from("<IHHq", body)
            assert magic == BYTE_ORDER_MAGIC and (major, minor) == (1, 0)
            assert length == -1 or length >= 0
            sections.append(Section(_options(body[16:])))
        elif btype == IDB:
            assert sections, "IDB before any SHB"
            linktype, reserved, snaplen = struct.unpack_from("<HHI", body)
            assert reserved == 0
            sections[-1].interfaces.append((linktype, snaplen, _options(body[8:])))
        elif btype == EPB:
            assert sections and sections[-1].interfaces, "EPB before its IDB"
            iface, hi, lo, caplen, origlen = struct.unpack_from("<IIIII", body)
            assert iface < len(sections[-1].interfaces)
            assert caplen == origlen, "packet truncated"
            assert caplen <= sections[-1].interfaces[iface][1] or sections[-1].interfaces[iface][1] == 0
            padded = caplen + (-caplen % 4)
            packet = body[20 : 20 + caplen]
            assert body[20 + caplen : 20 + padded] == bytes(padded - caplen)
            sections[-1].packets.append(Packet(iface, hi << 32 | lo, packet, _options(body[20 + padded :])))
        else:
            pytest.fail(f"unexpected block type 0x{btype:08x} at {pos}")
        pos += total
    return sections


# ------------------------------------------------------------ the file


def test_blocks_are_well_formed(corpus_log: CorpusLog, converted: Convert) -> None:
    sections = read_pcapng(converted(corpus_log).read_bytes())
    assert len(sections) == 1
    (sec,) = sections
    assert sec.options.get(SHB_USERAPPL), "no shb_userappl"
    assert len(sec.interfaces) == 1
    linktype, snaplen, opts = sec.interfaces[0]
    assert linktype == LINKTYPE_ETHERNET
    assert opts.get(IF_NAME) and opts.get(IF_DESCRIPTION)
    assert all(p.comment for p in sec.packets), "a packet without a comment"
    assert max(len(p.data) for p in sec.packets) <= snaplen


def test_tshark_reads_what_the_blocks_hold(corpus_log: CorpusLog, converted: Convert) -> None:
    require_tshark()
    pcap = converted(corpus_log)
    (sec,) = read_pcapng(pcap.read_bytes())
    frames = cached_frames(pcap)
    assert len(frames) == len(sec.packets)
    assert [f.ts_us for f in frames] == [p.ts_us for p in sec.packets]
    assert [f.comment for f in frames] == [p.comment for p in sec.packets]
    # the packets are Ethernet/IPv4/TCP: TCP payload = the frame after 54 header bytes
    assert [f.payload for f in frames] == [p.data[54:] for p in sec.packets]


def _frames(log: CorpusLog) -> list[tuple[int, bytes, str]]:
    parser = LogParser()
    framer = Framer(start_us=1_600_000_000_000_000)
    out = []
    for event in parser.feed(log.data) + parser.close():
        out += framer.frames(event)
    return out + framer.close()


def test_round_trip_through_bytesio(corpus_log: CorpusLog) -> None:
    frames = _frames(corpus_log)
    buf = io.BytesIO()
    writer = PcapngWriter(
        buf, name="swtpm:test", description="a test", application="tests", comment="round trip"
    )
    for ts, pkt, comment in frames:
        writer.write(ts, pkt, comment)
    writer.flush()
    (sec,) = read_pcapng(buf.getvalue())
    assert sec.options[OPT_COMMENT] == [b"round trip"]
    assert sec.options[SHB_USERAPPL] == [b"tests"]
    assert sec.interfaces[0][2][IF_NAME] == [b"swtpm:test"]
    assert sec.interfaces[0][2][IF_DESCRIPTION] == [b"a test"]
    assert [(p.ts_us, p.data, p.comment) for p in sec.packets] == frames


def test_write_many_equals_write(corpus_log: CorpusLog) -> None:
    frames = _frames(corpus_log)
    one, many = io.BytesIO(), io.BytesIO()
    w1 = PcapngWriter(one, name="n", description="d", application="a")
    w2 = PcapngWriter(many, name="n", description="d", application="a")
    for ts, pkt, comment in frames:
        w1.write(ts, pkt, comment)
    w2.write_many(frames[:7])
    w2.write_many(frames[7:])
    assert one.getvalue() == many.getvalue()


def test_odd_sizes_and_non_ascii_comments() -> None:
    buf = io.BytesIO()
    writer = PcapngWriter(buf, name="ä", description="", application="x")
    cases = [(n, bytes(range(n)), "é" * (n % 5)) for n in range(0, 9)]
    for ts, pkt, comment in cases:
        writer.write(ts, pkt, comment)
    big = 1 << 40  # timestamps need both 32-bit halves
    writer.write(big + 5, b"\x01", "z")
    (sec,) = read_pcapng(buf.getvalue())
    assert [(p.ts_us, p.data, p.comment) for p in sec.packets] == cases + [(big + 5, b"\x01", "z")]
    assert sec.interfaces[0][2][IF_NAME] == ["ä".encode()]


def test_live_writer_flushes_every_frame(corpus_log: CorpusLog) -> None:
    """Over a real pipe (as Wireshark's fifo), each frame is readable at once."""
    frames = _frames(corpus_log)[:20]
    r, w = os.pipe()

    def available() -> bytes:
        try:
            return os.read(r, 1 << 20)
        except BlockingIOError:  # nothing has arrived
            return b""

    os.set_blocking(r, False)
    with os.fdopen(w, "wb") as out:  # buffered: without flushes nothing would arrive
        writer = PcapngWriter(out, name="n", description="d", application="a", live=True)
        got = available()
        assert read_pcapng(got)[0].packets == []
        for i, (ts, pkt, comment) in enumerate(frames):
            writer.write(ts, pkt, comment)
            got += available()
            assert len(read_pcapng(got)[0].packets) == i + 1
        writer.write_many(frames)
        got += available()
        assert len(read_pcapng(got)[0].packets) == 2 * len(frames)
    os.close(r)


# ------------------------------------------------------------ pyshark


def test_tshark_decodes_the_truths_tpm_codes(corpus_log: CorpusLog, converted: Convert) -> None:
    require_tshark()
    frames = cached_frames(converted(corpus_log))
    exchanges = [e for e in corpus_log.exchanges() if e["channel"] == "tpm"]
    assert [f.tpm_cc for f in frames if f.payload and f.dport == TPM_PORT] == corpus_log.tpm_command_codes()
    assert [f.tpm_rc for f in frames if f.payload and f.sport == TPM_PORT] == [
        int(e["response_code"], 16) for e in exchanges
    ]


def _smallest_logs(n: int) -> list[Path]:
    return sorted(corpus_log_paths(), key=lambda p: p.stat().st_size)[:n]


@pytest.mark.parametrize("path", _smallest_logs(2), ids=lambda p: p.name)
def test_pyshark_decodes_the_truths_tpm_codes(path: Path, converted: Convert, pyshark_loop: object) -> None:
    """pyshark (PDML) on the two smallest corpus logs: a second reader of the
    same file, kept to two logs because PDML parsing is slow."""
    require_tshark()
    pyshark = pytest.importorskip("pyshark")
    corpus_log = load_corpus_log(path)
    cap = pyshark.FileCapture(
        str(converted(corpus_log)),
        use_json=False,  # one output mode: PDML
        use_ek=False,
        include_raw=False,
        keep_packets=False,
        display_filter="tpm",
        override_prefs={"tcp.desegment_tcp_streams": "FALSE"},
    )
    commands: list[int] = []
    responses: list[int] = []
    frames = 0
    try:
        for pkt in cap:
            frames += 1
            names = [layer.layer_name for layer in pkt.layers]
            assert names[names.index("eth") :][:4] == ["eth", "ip", "tcp", "tpm"], names
            tcp, tpm = pkt.tcp, pkt.tpm
            assert pkt.ip.src == pkt.ip.dst == "127.0.0.1"
            if int(tcp.dstport) == TPM_PORT:
                commands.append(int(tpm.get_field_value("tpm.req.cc"), 16))
            else:
                assert int(tcp.srcport) == TPM_PORT
                responses.append(int(tpm.get_field_value("tpm.resp.rc"), 16))
    finally:
        cap.close()
    exchanges = [e for e in corpus_log.exchanges() if e["channel"] == "tpm"]
    assert frames == 2 * len(exchanges)
    assert commands == corpus_log.tpm_command_codes()
    assert responses == [int(e["response_code"], 16) for e in exchanges]


def test_a_comment_past_the_option_limit_is_cut_not_a_crash(tmp_path: Path) -> None:
    """pcapng's option length is 16 bits. The framer keeps its comments far
    below that (tests/test_frames.py); the writer still never raises on a
    longer one: it cuts it at a character boundary and says so."""
    from swtpm_extcap.pcapng.writer import MAX_OPTION

    buf = io.BytesIO()
    writer = PcapngWriter(buf, name="x", description="x", application="x")
    long_ascii = "a" * 70_000
    long_utf8 = "é" * 40_000  # 80,000 bytes, cut must not split a character
    from swtpm_extcap.pcapng.frames import build_frame

    pkts = [build_frame(50000, 2321, 1, 1, 0x18, payload) for payload in (b"\x01\x02", b"\x03", b"\x04")]
    writer.write(1, pkts[0], long_ascii)
    writer.write_many([(2, pkts[1], long_utf8), (3, pkts[2], "short")])
    (sec,) = read_pcapng(buf.getvalue())
    comments = [p.comment for p in sec.packets]
    assert all(len(p.options[OPT_COMMENT][0]) <= MAX_OPTION for p in sec.packets)
    assert comments[0].startswith("a" * 60_000) and comments[0].endswith("[comment cut: too long for pcapng]")
    assert comments[1].startswith("é" * 30_000) and comments[1].endswith("[comment cut: too long for pcapng]")
    assert comments[2] == "short"
    require_tshark()
    path = tmp_path / "long.pcapng"
    path.write_bytes(buf.getvalue())
    from conftest import read_frames

    assert [f.payload for f in read_frames(path)] == [b"\x01\x02", b"\x03", b"\x04"]
