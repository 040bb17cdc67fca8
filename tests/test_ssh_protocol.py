"""The remote reader's frames as untrusted input (swtpm_extcap.sources.ssh_protocol), in process:
valid streams in every chunking, login chatter, malformed, oversized and hostile frames, a fuzz,
and memory that stays bounded whatever the host sends."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swtpm_extcap.sources.ssh_protocol import (
    MAX_HEADER,
    MAX_PREAMBLE,
    FrameDecoder,
    Header,
    Item,
    ProtocolError,
    Zeros,
)

pytestmark = pytest.mark.fast

TOKEN = "0123456789abcdef0123456789abcdef"
HELLO = f"SWTPM-READER 2 {TOKEN}\n".encode()
MAX_FRAME = 64 << 20


def decode(chunks: list[bytes], max_frame: int = MAX_FRAME) -> list[object]:
    """Items of a stream fed in ``chunks``, normalised: headers, then runs of log bytes joined."""
    dec = FrameDecoder(TOKEN, max_frame=max_frame)
    items: list[Item] = []
    for chunk in chunks:
        items += dec.feed(chunk)
    out: list[object] = []
    for item in items:
        data = bytes(item.count) if isinstance(item, Zeros) else item
        if isinstance(data, bytes):
            if out and isinstance(out[-1], bytes):
                out[-1] += data
            else:
                out.append(data)
        else:
            out.append(data)
    return out


def frame(data: bytes, valid: int | None = None) -> bytes:
    return b"D %d\n" % len(data) + data + b"V %d\n" % (len(data) if valid is None else valid)


STREAM = (HELLO + b"O 1234 30 0\n" + frame(b"line one\nline two\n") + b"H\n"
          + frame(b"x\0\0\0y\0\0\0\0", valid=7) + b"T\n" + b"R 99 0\n" + b"W\n" + b"N 5 10\n"
          + frame(b"\0" * 10) + b"Q 2 1234 40\n" + b"G 77\n" + b"E EACCES permission denied\n")
WANT = [Header("O", ("1234", "30", "0")), b"line one\nline two\n", Header("H"), b"x\0\0\0y\0\0",
        Header("T"), Header("R", ("99", "0")), Header("W"), Header("N", ("5", "10")), b"\0" * 10,
        Header("Q", ("2", "1234", "40")), Header("G", ("77",)),
        Header("E", ("EACCES", "permission denied"))]


def test_a_valid_stream_decodes_the_same_in_every_chunking() -> None:
    assert decode([STREAM]) == WANT
    assert decode([bytes([b]) for b in STREAM]) == WANT
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
        parts = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)])]
        assert decode(parts) == WANT


@pytest.mark.parametrize("chatter", [
    b"Welcome to pve1!\n",
    b"no newline at the end",
    b"SWTPM-READER 2 ffffffffffffffffffffffffffffffff\nD 5\nforged\n",  # another token: chatter
    b"\x1b[1;31mcolours\x1b[0m\r\n" * 100,
    b"x" * (MAX_PREAMBLE - 1),
])
def test_login_chatter_before_the_hello_is_skipped(chatter: bytes) -> None:
    dec = FrameDecoder(TOKEN, max_frame=MAX_FRAME)
    items = dec.feed(chatter) + dec.feed(HELLO + b"W\n")
    assert items == [Header("W")] and dec.preamble == chatter


def test_too_much_chatter_is_an_error_without_a_hello() -> None:
    dec = FrameDecoder(TOKEN, max_frame=MAX_FRAME)
    with pytest.raises(ProtocolError, match="before the reader's hello"):
        for _ in range(MAX_PREAMBLE // 1000 + 2):
            dec.feed(b"y" * 1000)
    assert len(dec.preamble) <= MAX_PREAMBLE


@pytest.mark.parametrize("bad", [
    b"D abc\n", b"B 10 nan\n", b"B 10 1e999\n", b"E\n", b"D -1\n", b"D 0\n", b"D 01\n",
    b"D %d\n" % (MAX_FRAME + 1), b"D 99999999999999999999\n", b"V 3\n", b"O 1 2\n", b"O 1 2 3 4\n",
    b"T \n", b"Z\n", b"\n", b"O \xff 2 3\n", b"E lower case\n", b"E EIO " + b"x" * 200 + b"\n",
    b"D 3\nabcT\n", b"D 3\nabcV 4\n", b"D 3\nabcV 1\n", b"H" * MAX_HEADER,
    b"O 1 2 3" + b" " * MAX_HEADER + b"\n", b"B 1 2\r\n", b"Q 5 1 2\n",
])
def test_malformed_frames_are_one_protocol_error(bad: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode([HELLO + bad])
    text = str(info.value)
    assert "\n" not in text and len(text) < 200 and "\\x" not in text


def test_a_frame_of_nul_bytes_is_counted_not_kept() -> None:
    """64 MiB of NULs (a log of nothing but NULs, or padding) in 64 KiB reads: no copy held."""
    dec = FrameDecoder(TOKEN, max_frame=MAX_FRAME)
    dec.feed(HELLO + b"O 1 0 0\n" + b"D %d\n" % MAX_FRAME)
    zeros = bytes(1 << 16)
    tracemalloc.start()
    try:
        got: list[Item] = []
        for _ in range(MAX_FRAME >> 16):
            got += dec.feed(zeros)
        got += dec.feed(b"V %d\n" % (MAX_FRAME - 5))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == [Zeros(MAX_FRAME - 5)]
    assert peak < 1 << 20  # the decoder held none of the 64 MiB


def test_log_bytes_pass_as_they_come_and_trailing_nuls_wait_for_the_trailer() -> None:
    dec = FrameDecoder(TOKEN, max_frame=MAX_FRAME)
    assert dec.feed(HELLO + b"D 10\nab\0") == [b"ab"]
    assert dec.feed(b"\0c\0") == [Zeros(1), b"\0c"]
    assert dec.in_frame
    assert dec.feed(b"\0\0\0\0V 6\n") == [Zeros(1)]  # 6 of 10: the last 4 NULs were padding
    assert not dec.in_frame


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_fuzz_random_bytes_after_the_hello(noise: bytes, cuts: list[int]) -> None:
    """Any bytes: items or one ProtocolError, nothing else, in any chunking alike."""
    stream = HELLO + noise
    cuts = sorted({c for c in cuts if 0 < c < len(stream)})
    parts = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    results = []
    for chunking in ([stream], parts):
        try:
            results.append(("ok", decode(chunking, max_frame=256)))
        except ProtocolError:
            results.append(("error", None))
    assert results[0] == results[1]


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(STREAM) - 1), st.integers(0, 255), st.integers(1, 4))
def test_fuzz_mutated_valid_streams(at: int, byte: int, width: int) -> None:
    stream = bytearray(STREAM)
    stream[at : at + width] = bytes([byte]) * width
    try:
        decode([bytes(stream)])
    except ProtocolError as exc:
        assert "\n" not in str(exc)
