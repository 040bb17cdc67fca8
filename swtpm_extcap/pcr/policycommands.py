"""The policy commands of TPM 2.0 (Part 3, chapter 23): what each does to a policy
session's ``policyDigest``, as the specification defines it, read from the command.

Every policy command changes the digest in one of two ways: extend it
(``policyDigest = H(policyDigest || TPM_CC || arguments)``, PolicyUpdate's two hashes
for PolicySecret, PolicySigned, PolicyTicket, PolicyAuthorize) or reset it to zeros
first (PolicyOR, PolicyAuthorize, PolicyAuthorizeNV, PolicyRestart). :class:`Update`
holds that as data, so a digest can be recomputed with other inputs (another PCR
state, when an explanation searches the PCR history).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..tpm.hashes import alg_name, digest, digest_size
from ..tpm.structures import Command, Malformed, PcrSelection, read_digest_list, read_pcr_selection

CC = {
    "PolicyNV": 0x149, "PolicySecret": 0x151, "PolicySigned": 0x160, "PolicyAuthorize": 0x16A,
    "PolicyAuthValue": 0x16B, "PolicyCommandCode": 0x16C, "PolicyCounterTimer": 0x16D,
    "PolicyCpHash": 0x16E, "PolicyLocality": 0x16F, "PolicyNameHash": 0x170, "PolicyOR": 0x171,
    "PolicyTicket": 0x172, "PolicyPCR": 0x17F, "PolicyRestart": 0x180,
    "PolicyPhysicalPresence": 0x187, "PolicyDuplicationSelect": 0x188, "PolicyGetDigest": 0x189,
    "PolicyPassword": 0x18C, "PolicyNvWritten": 0x18F, "PolicyTemplate": 0x190,
    "PolicyAuthorizeNV": 0x192,
}
NAMES = {code: name for name, code in CC.items()}
#: the handle (0-based) that is the policy session, where it is not the first
SESSION_HANDLE = {CC["PolicySecret"]: 1, CC["PolicySigned"]: 1, CC["PolicyNV"]: 2,
                  CC["PolicyAuthorizeNV"]: 2}
HANDLES = {CC["PolicySecret"]: 2, CC["PolicySigned"]: 2, CC["PolicyNV"]: 3,
           CC["PolicyAuthorizeNV"]: 3}
#: TPMT_TK_AUTH tags: which command made a PolicyTicket's ticket
_ST_AUTH_SECRET, _ST_AUTH_SIGNED = 0x8029, 0x8025
_U16, _U32 = struct.Struct(">H"), struct.Struct(">I")
_OPERATIONS = ["EQ", "NEQ", "SIGNED_GT", "UNSIGNED_GT", "SIGNED_LT", "UNSIGNED_LT",
               "SIGNED_GE", "UNSIGNED_GE", "SIGNED_LE", "UNSIGNED_LE", "BITSET", "BITCLEAR"]


@dataclass(frozen=True, slots=True)
class Update:
    """A change of policyDigest: zeros first when ``reset``, then ``H(digest || part)``
    for each part in order."""

    reset: bool
    parts: tuple[bytes, ...]

    def apply(self, alg: int, old: bytes) -> bytes | None:
        size = digest_size(alg)
        if size is None:
            return None
        d: bytes | None = bytes(size) if self.reset else old
        for part in self.parts:
            if d is None:
                return None
            d = digest(alg, d + part)
        return d


def _extend(code: int, args: bytes = b"") -> Update:
    return Update(False, (_U32.pack(code) + args,))


def _policy_update(code: int, name: bytes, ref: bytes, *, reset: bool = False) -> Update:
    """PolicyUpdate(): H(H(digest || code || name) || policyRef)."""
    return Update(reset, (_U32.pack(code) + name, ref))


def pcr_update(selection: PcrSelection, pcr_digest: bytes) -> Update:
    """PolicyPCR: H(digest || TPM_CC_PolicyPCR || pcrs || pcrDigest)."""
    return _extend(CC["PolicyPCR"], selection.raw + pcr_digest)


def pcr_composite(alg: int, values: list[bytes]) -> bytes | None:
    """PolicyPCR's pcrDigest: H_authHash of the selected PCR values in selection order."""
    return digest(alg, b"".join(values))


@dataclass(frozen=True, slots=True)
class PolicyCall:
    """One policy command as read from the log, before its response.

    ``update`` is None when an input of the digest is not in the log (``why``); a
    PolicyPCR without a pcrDigest gets its update from the replayed PCRs (the tracker).
    """

    code: int
    session: int
    detail: str
    update: Update | None
    why: str = ""
    selection: PcrSelection | None = None
    pcr_digest: bytes = b""
    or_list: tuple[bytes, ...] = ()
    command_code: int = 0
    auth_value: bool = False
    password: bool = False
    entity: int = 0

    @property
    def name(self) -> str:
        if self.code < 0:
            return "a damaged command"
        return NAMES.get(self.code, f"policy command 0x{self.code:x}")

    def describe(self) -> str:
        return f"{self.name}({self.detail})" if self.detail else self.name

    def unknown(self, why: str) -> PolicyCall:
        return replace(self, update=None, why=why)


def current_pcrs(call: PolicyCall, alg: int,
                 values: list[tuple[int, int, bytes | None, str]]) -> PolicyCall:
    """A PolicyPCR without a pcrDigest: the TPM hashed its current PCRs, ``values``
    (bank, PCR, the replayed value, why it is unknown); so does the replay."""
    missing = [f"PCR {pcr}" for _, pcr, v, _ in values if v is None]
    if missing:
        why = next((slot_why for _, pcr, v, slot_why in values if v is None and slot_why), "")
        return call.unknown(f"the replay does not know {', '.join(missing)}"
                            + (f" ({why})" if why else ""))
    composite = pcr_composite(alg, [v for _, _, v, _ in values if v is not None])
    assert call.selection is not None
    if composite is None:
        return call.unknown("this Python cannot compute the session's hash")
    return PolicyCall(call.code, call.session, call.detail, pcr_update(call.selection, composite),
                      selection=call.selection, pcr_digest=composite)


def _with(call: PolicyCall, update: Update | None, alg: int) -> PolicyCall:
    if update is None:
        return call.unknown(f"this Python cannot compute {alg_name(alg)}")
    return replace(call, update=update)


def describe_selection(selection: PcrSelection) -> str:
    return "; ".join(f"{alg_name(alg)}: {','.join(map(str, pcrs))}"
                     for alg, pcrs in selection.banks if pcrs) or "no PCRs"


NameOf = Callable[[int], "tuple[bytes | None, str]"]


def read_call(cmd: Command, alg: int, name_of: NameOf, command_name: Callable[[int], str]) -> PolicyCall:
    """The policy command ``cmd`` (its handles split off already) on a session hashing
    with ``alg``; ``name_of(handle)`` gives an entity's Name (or None and why it is not
    known). Raises Malformed."""
    code = cmd.code
    session = cmd.handles[SESSION_HANDLE.get(code, 0)]
    r = cmd.reader()
    hidden = "its first parameter is encrypted by a session"
    if code == CC["PolicyPCR"]:
        given = r.tpm2b("pcrDigest")
        selection = read_pcr_selection(r)
        call = PolicyCall(code, session, describe_selection(selection), None,
                          selection=selection, pcr_digest=given)
        if given and cmd.encrypted:
            return call.unknown("its pcrDigest is encrypted by a session")
        return replace(call, update=pcr_update(selection, given)) if given else call
    if code in (CC["PolicyAuthValue"], CC["PolicyPassword"]):
        # PolicyPassword extends with TPM_CC_PolicyAuthValue, as PolicyAuthValue does
        return PolicyCall(code, session, "", _extend(CC["PolicyAuthValue"]),
                          auth_value=code == CC["PolicyAuthValue"],
                          password=code == CC["PolicyPassword"])
    if code == CC["PolicyPhysicalPresence"]:
        return PolicyCall(code, session, "", _extend(code))
    if code == CC["PolicyRestart"]:
        return PolicyCall(code, session, "", Update(True, ()))
    if code == CC["PolicyCommandCode"]:
        cc = r.u32("commandCode")
        return PolicyCall(code, session, command_name(cc), _extend(code, _U32.pack(cc)),
                          command_code=cc)
    if code in (CC["PolicyCpHash"], CC["PolicyNameHash"], CC["PolicyTemplate"]):
        value = r.tpm2b()
        call = PolicyCall(code, session, value.hex(), _extend(code, value))
        return call.unknown(hidden) if cmd.encrypted else call
    if code in (CC["PolicyLocality"], CC["PolicyNvWritten"]):
        byte = r.u8()
        shown = f"0x{byte:02x}" if code == CC["PolicyLocality"] else ("YES" if byte else "NO")
        return PolicyCall(code, session, shown, _extend(code, bytes([byte])))
    if code == CC["PolicyOR"]:
        digests = read_digest_list(r)
        return PolicyCall(code, session, f"{len(digests)} branches",
                          Update(True, (_U32.pack(code) + b"".join(digests),)), or_list=digests)
    if code in (CC["PolicySecret"], CC["PolicySigned"]):
        r.tpm2b("nonceTPM")
        r.tpm2b("cpHashA")
        ref = r.tpm2b("policyRef")
        entity = cmd.handles[0]
        name, why = name_of(entity)
        call = PolicyCall(code, session, f"0x{entity:08x}", None, entity=entity)
        return call.unknown(why) if name is None else replace(call, update=_policy_update(code, name, ref))
    if code == CC["PolicyTicket"]:
        r.tpm2b("timeout")
        r.tpm2b("cpHashA")
        ref = r.tpm2b("policyRef")
        name = r.tpm2b("authName")
        tag = r.u16("ticket")
        kind = {_ST_AUTH_SECRET: CC["PolicySecret"], _ST_AUTH_SIGNED: CC["PolicySigned"]}.get(tag)
        if kind is None:
            raise Malformed(f"PolicyTicket with a ticket tag 0x{tag:04x}")
        return PolicyCall(code, session, NAMES[kind], _policy_update(kind, name, ref))
    if code == CC["PolicyAuthorize"]:
        r.tpm2b("approvedPolicy")
        ref = r.tpm2b("policyRef")
        key = r.tpm2b("keySign")
        return PolicyCall(code, session, f"key {key.hex()}", _policy_update(code, key, ref, reset=True))
    if code in (CC["PolicyNV"], CC["PolicyAuthorizeNV"]):
        index = cmd.handles[1]
        name, why = name_of(index)
        if code == CC["PolicyAuthorizeNV"]:
            call = PolicyCall(code, session, f"NV 0x{index:08x}", None, entity=index)
            return call.unknown(why) if name is None else replace(
                call, update=Update(True, (_U32.pack(code) + name,)))
        operand = r.tpm2b("operandB")
        offset, operation = r.u16("offset"), r.u16("operation")
        op = _OPERATIONS[operation] if operation < len(_OPERATIONS) else f"0x{operation:x}"
        call = PolicyCall(code, session, f"NV 0x{index:08x} {op} at {offset}", None, entity=index)
        if cmd.encrypted:
            return call.unknown(hidden + " (operandB)")
        if name is None:
            return call.unknown(why)
        return _with(call, _args_update(code, alg, operand, offset, operation, name), alg)
    if code == CC["PolicyCounterTimer"]:
        operand = r.tpm2b("operandB")
        offset, operation = r.u16("offset"), r.u16("operation")
        call = PolicyCall(code, session, f"offset {offset}", None)
        if cmd.encrypted:
            return call.unknown(hidden + " (operandB)")
        return _with(call, _args_update(code, alg, operand, offset, operation, b""), alg)
    if code == CC["PolicyDuplicationSelect"]:
        obj, parent, include = r.tpm2b("objectName"), r.tpm2b("newParentName"), r.u8()
        args = (obj if include else b"") + parent + bytes([include])
        call = PolicyCall(code, session, f"parent {parent.hex()}", _extend(code, args))
        return call.unknown(hidden) if cmd.encrypted else call
    return PolicyCall(code, session, "", None, why=f"{command_name(code)} is not replayed")


def _args_update(code: int, alg: int, operand: bytes, offset: int, operation: int,
                 name: bytes) -> Update | None:
    """PolicyNV, PolicyCounterTimer: H(digest || code || args [|| nvIndexName]) with
    args = H(operandB || offset || operation), both with the session's hash."""
    args = digest(alg, operand + _U16.pack(offset) + _U16.pack(operation))
    return None if args is None else _extend(code, args + name)
