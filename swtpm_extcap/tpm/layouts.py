"""How each TPM 2.0 type is marshaled, read from the reference's marshaling code: numbers,
structures (members in wire order), TPM2Bs, unions by their selector, arrays by their count."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Union

from .cheaders import CAST, Macros, ReferenceError_, balanced, split_args

#: the reference's base types: size in bytes, signed
PRIMITIVES = {
    "UINT8": (1, False), "BYTE": (1, False), "INT8": (1, True), "UINT16": (2, False),
    "INT16": (2, True), "UINT32": (4, False), "INT32": (4, True), "UINT64": (8, False),
    "INT64": (8, True),
}

#: HAND_ Part 2, TPM2B_ATTEST: "attestationData" holds a marshaled TPMS_ATTEST; TPM2B_TEMPLATE:
#: "buffer" holds a marshaled TPMT_PUBLIC (or a TPMT_TEMPLATE, whose unique may be a TPMS_DERIVE:
#: the engine shows what the structure leaves of the size as bytes)
HAND_INNER = {"TPM2B_ATTEST": "TPMS_ATTEST", "TPM2B_TEMPLATE": "TPMT_PUBLIC"}
#: a type built on it is a handle: named by TPM_RH and its range (TPM_HT), not by constants
HANDLE_TYPE = "TPM_HANDLE"


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class Scalar:
    """A number on the wire."""

    size: int
    signed: bool = False
    names: str | None = None  # the constant table naming its values
    bits: str | None = None  # the TPMA_* table naming its bits
    handle: bool = False  # a TPM_HANDLE: named by TPM_RH and its range (TPM_HT)


@dataclass(frozen=True)
class Member:
    """One member of a structure, union arm or command."""

    name: str
    type: str
    count: str | int | None = None  # an array: its count (a member's name, or a number)
    selector: str | None = None  # a union: the member whose value picks the arm


@dataclass(frozen=True)
class Struct:
    members: tuple[Member, ...]


@dataclass(frozen=True)
class Bytes:
    """A TPM2B of bytes: UINT16 size, then that many bytes (``buffer``)."""

    buffer: str


@dataclass(frozen=True)
class Sized:
    """A TPM2B holding one structure: UINT16 size, then the structure."""

    inner: Member


@dataclass(frozen=True)
class Arm:
    """A union arm: a member, bytes of a fixed length, or nothing (``member is None``)."""

    member: Member | None
    fixed: int | None = None


@dataclass(frozen=True)
class Union_:
    arms: tuple[tuple[int, Arm], ...]


Layout = Union[Scalar, Struct, Bytes, Sized, Union_]

_CALL = re.compile(r"\b([A-Za-z_]\w*?)(_Array)?_(?:Unmarshal|Marshal)\s*\(")
_MEMBER = re.compile(r"(?:target|source)\s*->\s*([\w.]+)")
_CASE = re.compile(r"\bcase\s+([A-Za-z_]\w*)\s*:")


@dataclass(frozen=True)
class _Call:
    callee: str
    array: bool
    member: str | None  # None: the whole target (an alias)
    extra: tuple[str, ...]  # the arguments after buffer and size


def _calls(body: str) -> Iterator[_Call]:
    for match in _CALL.finditer(body):
        open_ = match.end() - 1
        args = split_args(body[open_ + 1:balanced(body, open_, "(", ")") - 1])
        if len(args) < 3:
            continue
        yield _Call(match.group(1), bool(match.group(2)), _member_ref(args[0]), tuple(args[3:]))


def _member_ref(arg: str) -> str | None:
    found = _MEMBER.search(arg)
    if not found:
        return None
    name = found.group(1)
    return name[2:] if name.startswith("t.") else name


class Layouts:
    """Each type's layout from its marshaling function (Unmarshal, else Marshal)."""

    def __init__(self, bodies: dict[tuple[str, str], str], macros: Macros,
                 constants: dict[str, dict[int, str]], bits: dict[str, list[tuple[int, str]]]) -> None:
        self.bodies = bodies
        self.macros = macros
        self.constants = constants
        self.bits = bits
        #: type -> layout, each type and every type it contains (filled by :meth:`resolve`)
        self.layouts: dict[str, Layout] = {}
        #: union arms whose type the reference names but does not define (e.g. XMSS, LMS)
        self.missing: set[str] = set()

    def known(self, type_: str) -> bool:
        return type_ in PRIMITIVES or any((type_, k) in self.bodies for k in ("Unmarshal", "Marshal"))

    def body(self, type_: str) -> str:
        for kind in ("Unmarshal", "Marshal"):
            if (type_, kind) in self.bodies:
                return self.bodies[(type_, kind)]
        raise ReferenceError_(f"no marshaling code for {type_}")

    def resolve(self, type_: str) -> None:
        """Add ``type_`` and every type it contains to :attr:`layouts`."""
        todo = [type_]
        while todo:
            name = todo.pop()
            if name in self.layouts:
                continue
            layout = self.layout(name)
            self.layouts[name] = layout
            todo.extend(_contained(layout))

    def layout(self, type_: str) -> Layout:
        if type_ in PRIMITIVES:
            size, signed = PRIMITIVES[type_]
            return Scalar(size, signed)
        body = self.body(type_)
        if re.search(r"switch\s*\(\s*selector\s*\)", body):
            return self._union(body)
        calls = list(_calls(body))
        if not calls:
            return Struct(())  # TPMS_EMPTY: nothing on the wire
        if len(calls) == 1 and calls[0].member is None and not calls[0].array:
            if self._is_scalar(calls[0].callee):
                return self._scalar(type_, calls[0].callee)
            return self.layout(calls[0].callee)  # e.g. TPMS_SIG_SCHEME_RSASSA is a TPMS_SCHEME_HASH
        # a TPM2B: the size (TPM2B_CREATION_DATA_Marshal writes a placeholder, then the structure)
        if calls[0].member in ("size", None) and calls[0].callee == "UINT16" and len(calls) == 2:
            second = calls[1]
            if second.array and second.callee == "BYTE" and second.member is not None:
                if type_ in HAND_INNER:
                    return Sized(Member(second.member, HAND_INNER[type_]))
                return Bytes(second.member)
            if not second.array and second.member is not None:
                return Sized(self._member(second))
        return Struct(tuple(self._member(call) for call in calls))

    def _is_scalar(self, type_: str) -> bool:
        while type_ not in PRIMITIVES:
            calls = list(_calls(self.body(type_)))
            if len(calls) != 1 or calls[0].member is not None or calls[0].array:
                return False
            type_ = calls[0].callee
        return True

    def _scalar(self, type_: str, base: str) -> Scalar:
        chain = [type_]
        while chain[-1] not in PRIMITIVES:
            calls = list(_calls(self.body(chain[-1])))
            if len(calls) != 1 or calls[0].member is not None:
                raise ReferenceError_(f"{chain[-1]}: not an alias of a base type")
            chain.append(calls[0].callee)
        size, signed = PRIMITIVES[chain[-1]]
        names = next((t for t in chain if t in self.constants and not t.startswith("TPMA_")), None)
        bits = next((t for t in chain if t in self.bits), None)
        handle = HANDLE_TYPE in chain
        if handle:
            names = None
        return Scalar(size, signed, names, bits, handle)

    def _member(self, call: _Call) -> Member:
        if call.member is None:
            raise ReferenceError_(f"call of {call.callee} without a member")
        count: str | int | None = None
        selector = None
        if call.array:
            last = call.extra[-1] if call.extra else ""
            ref = _member_ref(last)
            count = ref if ref is not None else self.macros.evaluate(last)
        elif call.extra and _member_ref(call.extra[-1]) is not None:
            selector = _member_ref(call.extra[-1])
        return Member(call.member, call.callee, count, selector)

    def _union(self, body: str) -> Union_:
        arms: list[tuple[int, Arm]] = []
        pending: list[int] = []
        # each "case X:" run ends at the next return statement
        for piece in re.split(r"(?=\bcase\s)|(?=\bdefault\s*:)", body):
            cases = _CASE.findall(piece)
            pending.extend(self.macros.value(c) for c in cases)
            ret = re.search(r"\breturn\b(.*?);", piece, re.S)
            if not ret or not pending:
                continue
            calls = list(_calls(ret.group(1)))
            if not calls:
                arm = Arm(None)
            elif calls[0].array:
                assert calls[0].member is not None
                size_name = calls[0].extra[-1]
                try:
                    size = self.macros.evaluate(size_name)
                except (KeyError, ValueError):  # a size the reference does not define
                    self.missing.add(CAST.sub("", size_name).strip())
                    pending = []
                    continue
                arm = Arm(Member(calls[0].member, "BYTE"), size)
            elif not self.known(calls[0].callee):
                self.missing.add(calls[0].callee)
                pending = []
                continue
            else:
                arm = Arm(self._member(calls[0]))
            arms.extend((value, arm) for value in pending)
            pending = []
        if not arms:
            raise ReferenceError_("a union without arms")
        return Union_(tuple(arms))


def _contained(layout: Layout) -> list[str]:
    if isinstance(layout, Struct):
        return [m.type for m in layout.members]
    if isinstance(layout, Sized):
        return [layout.inner.type]
    if isinstance(layout, Union_):
        return [arm.member.type for _, arm in layout.arms if arm.member is not None]
    if isinstance(layout, Bytes):
        return ["BYTE"]
    return []


