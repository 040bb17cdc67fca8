"""The structure readers against an independent decoder: tpmstream (PyPI) decodes the
policy commands and public areas of the recorded sessions (tests/data/policy); what
the replay reads of them (authPolicy, attributes, PCR selections, OR branches, command
codes, NV public areas) must be what tpmstream reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swtpm_extcap.pcr.policycommands import read_call
from swtpm_extcap.swtpmlog.parser import Kind, Record, parse_bytes
from swtpm_extcap.tpm.structures import parse_command, read_nv_public, read_public
from swtpm_extcap.tpm.tables import SHAPES

tpmstream = pytest.importorskip("tpmstream", reason="tpmstream is a test extra (pyproject.toml)")
from tpmstream.common.object import events_to_objs  # noqa: E402
from tpmstream.io.binary import Binary  # noqa: E402
from tpmstream.spec.commands import CommandResponseStream  # noqa: E402

DATA = Path(__file__).parent / "data" / "policy"
LOAD, NV_DEFINE, POLICY_PCR, POLICY_OR, POLICY_CC = 0x157, 0x12A, 0x17F, 0x171, 0x16C


def _bytes(b2b: Any) -> bytes:
    return bytes(int(b) for b in b2b.buffer)


def _decode(data: bytes) -> Any:
    return list(events_to_objs(Binary.marshal(tpm_type=CommandResponseStream, buffer=data)))[0]


def test_readers_agree_with_tpmstream() -> None:
    compared: dict[int, int] = {}
    for log in sorted(DATA.glob("*.log")):
        for ev in parse_bytes(log.read_bytes()):
            if type(ev) is not Record or ev.kind is not Kind.TPM_COMMAND:
                continue
            code = int.from_bytes(ev.data[6:10], "big")
            if code not in (LOAD, NV_DEFINE, POLICY_PCR, POLICY_OR, POLICY_CC):
                continue
            theirs = _decode(ev.data)
            ours = parse_command(ev.data, SHAPES[code][0])
            r = ours.reader()
            if code == LOAD:
                r.tpm2b()
                public = read_public(r)
                area = theirs.parameters.inPublic.publicArea
                assert public.auth_policy == _bytes(area.authPolicy)
                assert public.name_alg == int(area.nameAlg)
            elif code == NV_DEFINE:
                r.tpm2b()
                nv = read_nv_public(r)
                info = theirs.parameters.publicInfo.nvPublic
                assert nv.auth_policy == _bytes(info.authPolicy)
                assert (nv.index, nv.size) == (int(info.nvIndex), int(info.dataSize))
            else:
                call = read_call(ours, 0x000B, lambda h: (None, ""), str)
                params = theirs.parameters
                if code == POLICY_PCR:
                    assert call.selection is not None and call.pcr_digest == _bytes(params.pcrDigest)
                    theirs_sel = [(int(s.hash), [int(b) for b in s.pcrSelect])
                                  for s in params.pcrs.pcrSelections]
                    assert [(alg, sum(1 << p for p in pcrs)) for alg, pcrs in call.selection.banks] == [
                        (alg, int.from_bytes(bytes(bits), "little")) for alg, bits in theirs_sel]
                elif code == POLICY_OR:
                    assert list(call.or_list) == [_bytes(d) for d in params.pHashList.digests]
                else:
                    assert call.command_code == int(params.code)
            compared[code] = compared.get(code, 0) + 1
    assert set(compared) == {LOAD, NV_DEFINE, POLICY_PCR, POLICY_OR, POLICY_CC}, compared
