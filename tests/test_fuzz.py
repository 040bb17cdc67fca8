"""Fuzz: the real corpus logs mutated, every case parsed four ways and converted.

Mutations (``fuzzlog.py``): byte flips; deleted, duplicated and shuffled lines;
NUL bytes; invalid UTF-8; lone CRs; CRLF, CR-only and mixed line ends; giant,
negative, hex and 5,000-digit lengths; headers without hex; hex without
header; prefixes of 0-300 characters; a hex line that lost its prefix; records
longer than their header; a message logged as two reads; junk and giant lines;
a cut end; TPM size fields that lie under PCR commands, PCR commands logged as
several reads (the first under 10 bytes), runs of junk (issue 16). For each
case: no exception, the same events whole, line by line, through the
line-by-line reference and in random chunks, a well-formed pcapng whose TPM
port carries only TPM records, the pcrs reports; tshark reads a sample back
(checksums valid, every packet there).

``SWTPM_FUZZ_CASES`` sets the number of cases (default 600, ~20 s here);
``SWTPM_FUZZ_SEED`` the first seed. The long run is ``bench/fuzz.py``
(100,000 cases, counts instead of stopping at the first failure).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

import fuzzlog
from conftest import corpus_log_paths, load_corpus_log, read_frames, require_tshark

CASES = int(os.environ.get("SWTPM_FUZZ_CASES", "600"))
SEED = int(os.environ.get("SWTPM_FUZZ_SEED", "0"))
#: every this many cases go to tshark, in files of several pcapng sections
TSHARK_EVERY = 10
TSHARK_BATCH = 30


@functools.lru_cache(maxsize=1)
def corpus_lines() -> list[tuple[str, list[bytes]]]:
    paths = corpus_log_paths()
    assert paths, "swtpm log corpus not found (see conftest)"
    return [(p.name, load_corpus_log(p).lines) for p in paths]


def test_mutated_logs_parse_the_same_however_fed_and_convert(tmp_path: Path) -> None:
    logs = corpus_lines()
    sample: list[bytes] = []
    batches: list[Path] = []
    for seed in range(SEED, SEED + CASES):
        case = fuzzlog.make_case(seed, logs)
        pcap = fuzzlog.check(case)  # raises with the case (seed, mutations) on failure
        if seed % TSHARK_EVERY == 0:
            sample.append(pcap)
        if len(sample) == TSHARK_BATCH or (sample and seed == SEED + CASES - 1):
            batches.append(tmp_path / f"batch{len(batches)}.pcapng")
            batches[-1].write_bytes(b"".join(sample))  # one pcapng section per case
            sample = []
    require_tshark()
    for batch in batches:
        expected = fuzzlog.check_pcapng(batch.read_bytes())
        frames = read_frames(batch, "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE")
        assert len(frames) == expected, f"{batch.name}: tshark read {len(frames)} of {expected} packets"
        bad = [f.number for f in frames if (f.ip_checksum, f.tcp_checksum) != ("1", "1")]
        assert not bad, f"{batch.name}: bad checksums in frames {bad[:10]}"
        assert all(
            f.comment.startswith("swtpm log line") for f in frames if f.port == 2321 and f.payload
        )


def test_every_mutator_changes_a_real_log() -> None:
    """The mutators are not no-ops on real logs (a fuzz of nothing proves nothing)."""
    import random

    logs = corpus_lines()
    for name, (mutate, _) in fuzzlog.LINE_MUTATORS.items():
        changed = 0
        for seed in range(20):
            rng = random.Random(seed)
            _, lines = logs[seed % len(logs)]
            window = list(lines[100:200])
            if mutate(rng, list(window)) != window:
                changed += 1
        assert changed >= 10, f"{name} changed {changed} of 20 windows"
    for name, (bmutate, _) in fuzzlog.BYTE_MUTATORS.items():
        data = b"\n".join(logs[0][1][100:200]) + b"\n"
        assert any(bmutate(random.Random(s), data) != data for s in range(5)), name


@pytest.mark.parametrize(
    "mutation",
    sorted(set(fuzzlog.LINE_MUTATORS) | set(fuzzlog.BYTE_MUTATORS) | {"cr-endings", "crlf-endings"}),
)
def test_the_run_covers_every_mutator(mutation: str) -> None:
    """Every mutator is drawn within the short run's seeds (giant lines, rare
    because each costs a megabyte, within the first 2,000)."""
    logs = corpus_lines()
    horizon = max(CASES, 2000) if mutation == "giant-line" else CASES
    for seed in range(SEED, SEED + horizon):
        rng_case = fuzzlog.make_case if mutation != "giant-line" else None
        if rng_case is None:
            # cheap: draw the mutation names only, as make_case does
            import random

            rng = random.Random(seed)
            name, real = rng.choice(logs)
            if rng.random() >= 0.03:
                size = rng.randint(1, 300)
                rng.randint(0, max(0, len(real) - size))
            names = list(fuzzlog.LINE_MUTATORS)
            weights = [fuzzlog.LINE_MUTATORS[n][1] for n in names]
            if mutation in rng.choices(names, weights, k=rng.randint(0, 4)):
                return
            continue
        if mutation in rng_case(seed, logs).mutations:
            return
    pytest.fail(f"{mutation} never drawn in seeds {SEED}..{SEED + horizon - 1}")
