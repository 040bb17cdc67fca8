"""swtpm_extcap/tpm/tables.py is what tools/gen_tpm_tables.py makes of the TCG reference's
headers; the structure readers and response codes on known bytes and values."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from swtpm_extcap.tpm import rc
from swtpm_extcap.tpm.structures import Malformed, Reader, parse_command, read_pcr_selection

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_tpm_tables", ROOT / "tools" / "gen_tpm_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tables_are_generated_from_the_reference() -> None:
    gen = _generator()
    ref = gen.reference_dir()  # the checkout's copy (tests/data/tpm-reference), read by tpm.reference
    assert (ROOT / "swtpm_extcap" / "tpm" / "tables.py").read_text() == gen.generate(ref)


def test_response_codes() -> None:
    assert str(rc.decode(0x99D)) == "TPM_RC_POLICY_FAIL, session 1"
    assert str(rc.decode(0x1C4)) == "TPM_RC_VALUE, parameter 1"
    assert str(rc.decode(0x98E)) == "TPM_RC_AUTH_FAIL, session 1"
    assert str(rc.decode(0x128)) == "TPM_RC_PCR_CHANGED"
    assert str(rc.decode(0x922)) == "TPM_RC_RETRY"
    assert str(rc.decode(0x18B)) == "TPM_RC_HANDLE, handle 1"


def test_pcr_selection_and_a_cut_command() -> None:
    sel = read_pcr_selection(Reader(bytes.fromhex("00000002000b038000000004030100ff")))
    assert sel.pcrs() == [(0x0B, 7), (0x04, 0), *[(0x04, p) for p in range(16, 24)]]
    policy_pcr = bytes.fromhex("80010000001a0000017f03000001000000000001000b03800000")
    cmd = parse_command(policy_pcr, 1)
    assert (cmd.code, cmd.handles, cmd.sessions) == (0x17F, (0x03000001,), ())
    with pytest.raises(Malformed):
        parse_command(policy_pcr[:-2], 1)  # the size field says more
    assert hashlib.sha256(b"").digest()  # hashlib works here (the digests below depend on it)
