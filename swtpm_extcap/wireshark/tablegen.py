"""The Lua plugin's TPM 2.0 tables, generated from the TCG reference implementation's headers.

``python -m swtpm_extcap.wireshark.tablegen [--reference DIR] [--output FILE] [--check]``

The TCG's TPM 2.0 reference implementation (``TrustedComputingGroup/TPM``) ships
C files that are themselves generated from the TPM 2.0 Library Specification's
tables: they are the specification in machine-readable form. This module reads
them and writes ``swtpm/tables.lua`` (the plugin's data; the hand-written Lua
engine in ``swtpm/tpm2.lua`` walks it):

* constants and bit fields (``TpmTypes.h``): ``#define NAME (TYPE)(expr)``
  names each value of TPM_ALG_ID, TPM_CC, TPM_RC, TPM_ST, TPM_CAP, TPM_PT,
  TPM_RH, TPM_HT, ... and each bit of the TPMA_* types;
* how every structure is marshaled (``Marshal.c``, ``Marshal_fp.h``): the
  members of each TPMS/TPMT/TPML in wire order, the selector of each TPMU
  and its arms, the count of each array, TPM2B sizes, TPMI types and the
  base type they check;
* the command signatures: each command's ``<Command>_In`` and ``_Out``
  members in wire order with their names (``prototypes/<Command>_fp.h``),
  split into handles and parameters by ``CommandDispatchData.h``
  (``_H_UNMARSHAL`` / ``_P_UNMARSHAL``), or by the ``RC_<Command>_<name>``
  modifiers (``TPM_RC_H`` / ``TPM_RC_P``) for a command the reference's
  profile leaves out of its dispatch table;
* digest sizes of the fixed-size union arms (``TpmAlgorithmDefines.h``).

Field names are the specification's member names (``tpm2.pcrSelectionIn``,
``tpm2.nvIndex``); a member name that means different things in different
structures gets its type as a suffix for the less common meanings. Nothing in
the output is typed by hand except the few facts the headers do not carry,
each marked below (``HAND_``): the TPM 2.0 command and response header (Part 1),
YES/NO, and what a TPM2B_ATTEST's bytes hold.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

#: the reference implementation the committed tables come from
REFERENCE_REPO = "TrustedComputingGroup/TPM"
REFERENCE_COMMIT = "3b1f0e623f244abe2015df9e3ba86de5c9118524"

_HERE = Path(__file__).resolve().parent
#: the committed copy of the reference's files (a clean clone regenerates from it)
DEFAULT_REFERENCE = _HERE.parents[1] / "tests" / "data" / "tpm-reference"
DEFAULT_OUTPUT = _HERE / "swtpm" / "tables.lua"

TYPES_H = "TPMCmd/tpm/include/tpm_public/TpmTypes.h"
ALGORITHMS_H = "TPMCmd/tpm/include/tpm_public/TpmAlgorithmDefines.h"
MARSHAL_C = "TPMCmd/tpm/src/support/Marshal.c"
MARSHAL_H = "TPMCmd/tpm/include/private/prototypes/Marshal_fp.h"
DISPATCH_H = "TPMCmd/tpm/include/private/CommandDispatchData.h"
PROTOTYPES = "TPMCmd/tpm/include/private/prototypes"

#: the reference's base types: size in bytes, signed
PRIMITIVES = {
    "UINT8": (1, False), "BYTE": (1, False), "INT8": (1, True), "UINT16": (2, False),
    "INT16": (2, True), "UINT32": (4, False), "INT32": (4, True), "UINT64": (8, False),
    "INT64": (8, True),
}

#: HAND_ Part 1, 18.2 and 18.8 (command and response structure): the header and the
#: areas around the handles and parameters, with their names there
HAND_COMMAND_HEADER = (("tag", "TPMI_ST_COMMAND_TAG"), ("commandSize", "UINT32"),
                       ("commandCode", "TPM_CC"))
HAND_RESPONSE_HEADER = (("tag", "TPM_ST"), ("responseSize", "UINT32"),
                        ("responseCode", "TPM_RC"))
HAND_AREAS = (("authorizationSize", "UINT32"), ("parameterSize", "UINT32"),
              ("commandSession", "TPMS_AUTH_COMMAND"), ("responseSession", "TPMS_AUTH_RESPONSE"))
#: HAND_ TPMI_YES_NO's two values: the headers take YES and NO from the profile
#: (TpmProfile_CommandList.h insists on YES == 1 and NO == 0)
HAND_CONSTANTS = {"TPMI_YES_NO": {0: "NO", 1: "YES"}}
#: HAND_ Part 2, TPM2B_ATTEST: "attestationData" holds a marshaled TPMS_ATTEST; TPM2B_TEMPLATE:
#: "buffer" holds a marshaled TPMT_PUBLIC (or a TPMT_TEMPLATE, whose unique may be a TPMS_DERIVE:
#: the engine shows what the structure leaves of the size as bytes)
HAND_INNER = {"TPM2B_ATTEST": "TPMS_ATTEST", "TPM2B_TEMPLATE": "TPMT_PUBLIC"}
#: types whose constants name the values of the types built on them, in this order
#: (TPM_RH names handles; TPM_HANDLE has no constants of its own)
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


@dataclass(frozen=True)
class Command:
    code: int
    name: str
    request_handles: tuple[Member, ...]
    request_params: tuple[Member, ...]
    response_handles: tuple[Member, ...]
    response_params: tuple[Member, ...]


@dataclass
class Reference:
    """What the generator read: constants, layouts and commands."""

    constants: dict[str, dict[int, str]] = field(default_factory=dict)
    bits: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    layouts: dict[str, Layout] = field(default_factory=dict)
    commands: dict[int, Command] = field(default_factory=dict)
    all_cc: dict[str, int] = field(default_factory=dict)
    #: union arms left out: types the reference names but does not define
    missing: list[str] = field(default_factory=list)


class ReferenceError_(Exception):
    """The reference files do not have the shape this generator reads."""


# ---------------------------------------------------------------- C macros

_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)(?!\()\s+(.+?)\s*$")
_TYPED = re.compile(r"^\(\s*([A-Za-z_]\w*)\s*\)\s*\((.*)\)$")
_CAST = re.compile(r"\(\s*[A-Za-z_]\w*\s*\*?\s*\)(?=\s*[\w(])")
_SUFFIX = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b")


def _strip_comment(line: str) -> str:
    return re.sub(r"//.*$", "", re.sub(r"/\*.*?\*/", "", line)).rstrip()


class Macros:
    """Object-like ``#define``s of the headers, evaluated on demand."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}
        self.typed: list[tuple[str, str, str]] = []  # (type, name, expression), in file order
        self._cache: dict[str, int] = {}

    def read(self, source: str) -> None:
        for raw in source.splitlines():
            line = _strip_comment(raw)
            if line.endswith("\\"):
                continue
            match = _DEFINE.match(line)
            if not match:
                continue
            name, body = match.groups()
            self.text.setdefault(name, body)
            typed = _TYPED.match(body)
            if typed:
                self.typed.append((typed.group(1), name, typed.group(2)))

    def value(self, name: str) -> int:
        if name not in self._cache:
            if name not in self.text:
                raise KeyError(name)
            self._cache[name] = self.evaluate(self.text[name])
        return self._cache[name]

    def evaluate(self, expression: str) -> int:
        """A C integer expression of literals, these macros, casts and + - * / << >> | & ~."""
        text = _SUFFIX.sub(r"\1", _CAST.sub("", expression)).replace("/", "//")
        return self._eval(ast.parse(text.strip(), mode="eval").body)

    def _eval(self, node: ast.expr) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            return self.value(node.id)
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand)
            if isinstance(node.op, ast.USub):
                return -operand
            if isinstance(node.op, ast.Invert):
                return ~operand
            if isinstance(node.op, ast.UAdd):
                return operand
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left), self._eval(node.right)
            op = node.op
            if isinstance(op, ast.Add):
                return left + right
            if isinstance(op, ast.Sub):
                return left - right
            if isinstance(op, ast.Mult):
                return left * right
            if isinstance(op, ast.FloorDiv):
                return left // right
            if isinstance(op, ast.LShift):
                return left << right
            if isinstance(op, ast.RShift):
                return left >> right
            if isinstance(op, ast.BitOr):
                return left | right
            if isinstance(op, ast.BitAnd):
                return left & right
        raise ValueError(f"not a constant expression: {ast.dump(node)}")


# ---------------------------------------------------------------- constants and bits

#: markers that repeat another constant's value (a range's ends, helpers)
_MARKER = re.compile(r"_(FIRST|LAST|SHIFT|MASK|MAX_FM0|MAX_FM1)$")
_RC_MODIFIER = re.compile(r"^TPM_RC_([HPS]|[1-9A-F])$")


def read_constants(macros: Macros, ref: Reference) -> None:
    """TYPE -> value -> name, and the TPMA_* bits, from ``#define NAME (TYPE)(expr)``."""
    for type_, name, expression in macros.typed:
        if _MARKER.search(name):
            continue
        try:
            value = macros.evaluate(expression)
        except (KeyError, ValueError, SyntaxError):
            continue  # a profile-dependent value (e.g. PCR_LAST): not a name we show
        if type_.startswith("TPMA_"):
            prefix = type_ + "_"
            if name.startswith(prefix) and value:
                ref.bits.setdefault(type_, []).append((value, name[len(prefix):]))
            continue
        if not name.startswith(("TPM_", "TPM2_")):
            continue  # helpers such as RC_VER1, PT_FIXED, HR_PCR
        if type_ == "TPM_RC" and _RC_MODIFIER.match(name):
            continue  # TPM_RC_H, TPM_RC_P, TPM_RC_S, TPM_RC_1..F: parts of a format-1 code
        ref.constants.setdefault(type_, {}).setdefault(value, name)
    for type_, names in HAND_CONSTANTS.items():
        ref.constants[type_] = dict(names)
    ref.all_cc = {name[len("TPM_CC_"):]: value for value, name in ref.constants["TPM_CC"].items()}
    for type_, name, expression in macros.typed:  # aliases: TPM_CC_MAC beside TPM_CC_HMAC
        if type_ == "TPM_CC" and name.startswith("TPM_CC_") and not _MARKER.search(name):
            ref.all_cc.setdefault(name[len("TPM_CC_"):], macros.evaluate(expression))


# ---------------------------------------------------------------- marshaling code

_FUNCTION = re.compile(r"\b([A-Za-z_]\w*?)_(Unmarshal|Marshal)\s*\(([^;{)]*\))\s*\{")
_CALL = re.compile(r"\b([A-Za-z_]\w*?)(_Array)?_(?:Unmarshal|Marshal)\s*\(")
_MEMBER = re.compile(r"(?:target|source)\s*->\s*([\w.]+)")
_CASE = re.compile(r"\bcase\s+([A-Za-z_]\w*)\s*:")


def _balanced(text: str, start: int, open_: str, close: str) -> int:
    """The index just past the bracket that closes the one at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_:
            depth += 1
        elif text[i] == close:
            depth -= 1
            if depth == 0:
                return i + 1
    raise ReferenceError_(f"unbalanced {open_} at {start}")


def _split_args(text: str) -> list[str]:
    args: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    args.append("".join(current).strip())
    return args


def read_functions(sources: Iterable[str]) -> dict[tuple[str, str], str]:
    """(type, "Unmarshal" | "Marshal") -> function body, first definition wins."""
    bodies: dict[tuple[str, str], str] = {}
    for source in sources:
        code = "\n".join(_strip_comment(line) for line in source.splitlines()
                         if not line.lstrip().startswith("#"))
        for match in _FUNCTION.finditer(code):
            end = _balanced(code, match.end() - 1, "{", "}")
            bodies.setdefault((match.group(1), match.group(2)), code[match.end():end - 1])
    return bodies


@dataclass(frozen=True)
class _Call:
    callee: str
    array: bool
    member: str | None  # None: the whole target (an alias)
    extra: tuple[str, ...]  # the arguments after buffer and size


def _calls(body: str) -> Iterator[_Call]:
    for match in _CALL.finditer(body):
        open_ = match.end() - 1
        args = _split_args(body[open_ + 1:_balanced(body, open_, "(", ")") - 1])
        if len(args) < 3:
            continue
        member = _MEMBER.search(args[0])
        name = member.group(1) if member else None
        if name is not None and name.startswith("t."):
            name = name[2:]
        yield _Call(match.group(1), bool(match.group(2)), name, tuple(args[3:]))


def _member_ref(arg: str) -> str | None:
    found = _MEMBER.search(arg)
    if not found:
        return None
    name = found.group(1)
    return name[2:] if name.startswith("t.") else name


class Layouts:
    """Each type's layout from its marshaling function (Unmarshal, else Marshal)."""

    def __init__(self, bodies: dict[tuple[str, str], str], macros: Macros, ref: Reference) -> None:
        self.bodies = bodies
        self.macros = macros
        self.ref = ref
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
        """Add ``type_`` and every type it contains to ``ref.layouts``."""
        todo = [type_]
        while todo:
            name = todo.pop()
            if name in self.ref.layouts:
                continue
            layout = self.layout(name)
            self.ref.layouts[name] = layout
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
        names = next((t for t in chain if t in self.ref.constants and not t.startswith("TPMA_")), None)
        bits = next((t for t in chain if t in self.ref.bits), None)
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
                    self.missing.add(_CAST.sub("", size_name).strip())
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


# ---------------------------------------------------------------- commands

_STRUCT = re.compile(r"typedef\s+struct\s*\{(.*?)\}\s*(\w+)_(In|Out)\s*;", re.S)
_FIELD = re.compile(r"^\s*(\w+)\s+(\w+)\s*;", re.M)
_RC_MOD = re.compile(r"#\s*define\s+RC_(\w+?)_(\w+)\s+\(TPM_RC_([HPS])\s*\+")


def read_command(source: str) -> tuple[str, list[Member], list[Member], dict[str, str]]:
    """A prototype header: (command, In members, Out members, member -> H/P)."""
    ins: list[Member] = []
    outs: list[Member] = []
    command = ""
    for match in _STRUCT.finditer(source):
        members = [Member(name, type_) for type_, name in _FIELD.findall(match.group(1))]
        command = match.group(2)
        (ins if match.group(3) == "In" else outs).extend(members)
    kinds = {name: kind for _, name, kind in _RC_MOD.findall(source)}
    return command, ins, outs, kinds


_DISPATCH = re.compile(r"_(\w+)Data\s*=\s*\{.*?/\*\s*types\s*\*/\s*\{(.*?)\}\s*\}\s*;", re.S)
_MTYPE = re.compile(r"^(\w+?)_([HP])_(?:UNMARSHAL|MARSHAL)\b")


def read_dispatch(source: str) -> dict[str, tuple[list[str], list[str]]]:
    """Command -> (request H/P per member, response H/P per member)."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    for match in _DISPATCH.finditer(source):
        tokens = [t.strip() for t in match.group(2).split(",") if t.strip()]
        sides: list[list[str]] = [[], []]
        side = 0
        for token in tokens:
            if token.startswith("END_OF_LIST"):
                side += 1
                continue
            kind = _MTYPE.match(token)
            if kind and side < 2:
                sides[side].append(kind.group(2))
        out[match.group(1)] = (sides[0], sides[1])
    return out


def read_commands(reference: Path, ref: Reference) -> None:
    dispatch = read_dispatch((reference / DISPATCH_H).read_text())
    by_name = {name: code for name, code in ref.all_cc.items()}
    for path in sorted((reference / PROTOTYPES).glob("*_fp.h")):
        name, ins, outs, kinds = read_command(path.read_text())
        if not name or name not in by_name:
            continue
        code = by_name[name]
        if name in dispatch:
            req, rsp = dispatch[name]
            if len(req) != len(ins) or len(rsp) != len(outs):
                raise ReferenceError_(f"{name}: the dispatch table and the prototype disagree")
        else:  # not in the profile's dispatch table: the RC_ modifiers split the request
            req = [kinds.get(m.name, "P") for m in ins]
            rsp = ["P"] * len(outs)
        cmd = Command(code, name,
                      tuple(m for m, k in zip(ins, req) if k == "H"),
                      tuple(m for m, k in zip(ins, req) if k == "P"),
                      tuple(m for m, k in zip(outs, rsp) if k == "H"),
                      tuple(m for m, k in zip(outs, rsp) if k == "P"))
        if code in ref.commands:  # TPM_CC_MAC beside TPM_CC_HMAC: the first name keeps the code
            continue
        ref.commands[code] = cmd


def read_reference(reference: Path) -> Reference:
    """Everything the tables need, from the reference files under ``reference``."""
    ref = Reference()
    macros = Macros()
    for name in (ALGORITHMS_H, TYPES_H):
        macros.read((reference / name).read_text())
    read_constants(macros, ref)
    read_commands(reference, ref)
    bodies = read_functions((reference / name).read_text() for name in (MARSHAL_C, MARSHAL_H))
    layouts = Layouts(bodies, macros, ref)
    roots = [m.type for cmd in ref.commands.values() for m in
             cmd.request_handles + cmd.request_params + cmd.response_handles + cmd.response_params]
    roots += [t for _, t in HAND_COMMAND_HEADER + HAND_RESPONSE_HEADER + HAND_AREAS]
    for type_ in roots:
        layouts.resolve(type_)
    ref.missing = sorted(layouts.missing)
    return ref


# ---------------------------------------------------------------- fields

#: field names the hand-written Lua adds itself (the generator must not take them)
RESERVED = {"handle.type", "pcr", "encrypted", "size", "rc", "truncated", "unknown"}


@dataclass(frozen=True)
class FieldSpec:
    abbrev: str
    label: str
    ftype: str  # uint8 .. uint64, int8 .., bytes, none
    base: str  # HEX, DEC, NONE
    names: str | None  # constant table (value string)
    handle: bool = False


def _field_key(member: Member, layout: Layout | None, fixed: bool = False) -> tuple[str, str, str | None, bool]:
    if fixed or (member.type == "BYTE" and member.count is not None) or isinstance(layout, Bytes):
        return ("bytes", "NONE", None, False)
    if isinstance(layout, Scalar):
        ftype = ("int" if layout.signed else "uint") + str(8 * layout.size)
        base = "HEX" if (layout.names or layout.bits or layout.handle) else "DEC"
        return (ftype, base, layout.names, layout.handle)
    return ("none", "NONE", None, False)


def _members(ref: Reference) -> Iterator[tuple[Member, tuple[str, str, str | None, bool]]]:
    """Every member that becomes a tree item, with its field key.

    A union is transparent (its selected arm stands in its place) and so is the
    structure inside a TPM2B (its members follow the TPM2B's size)."""
    def item(m: Member) -> Iterator[tuple[Member, tuple[str, str, str | None, bool]]]:
        if not isinstance(ref.layouts[m.type], Union_):
            yield m, _field_key(m, ref.layouts[m.type])

    for name, type_ in HAND_COMMAND_HEADER + HAND_RESPONSE_HEADER + HAND_AREAS:
        yield from item(Member(name, type_))
    for cmd in ref.commands.values():
        for m in cmd.request_handles + cmd.request_params + cmd.response_handles + cmd.response_params:
            yield from item(m)
    for layout in ref.layouts.values():
        if isinstance(layout, Struct):
            for m in layout.members:
                yield from item(m)
        elif isinstance(layout, Union_):
            for _, arm in layout.arms:
                if arm.member is not None:
                    yield arm.member, _field_key(arm.member, ref.layouts[arm.member.type],
                                                 fixed=arm.fixed is not None)


def assign_fields(ref: Reference) -> tuple[list[FieldSpec], dict[tuple[str, tuple[str, str, str | None, bool]], int]]:
    """One field per (member name, meaning); the commonest meaning of a name keeps it plain."""
    uses: dict[str, Counter[tuple[str, str, str | None, bool]]] = {}
    types_of: dict[tuple[str, tuple[str, str, str | None, bool]], Counter[str]] = {}
    for member, key in _members(ref):
        uses.setdefault(member.name, Counter())[key] += 1
        types_of.setdefault((member.name, key), Counter())[member.type] += 1
    specs: list[FieldSpec] = []
    index: dict[tuple[str, tuple[str, str, str | None, bool]], int] = {}
    for name in sorted(uses):
        # the commonest meaning, then leaves before containers (people filter on values)
        ranked = sorted(uses[name].items(), key=lambda kv: (-kv[1], kv[0][0] == "none", repr(kv[0])))
        for rank, (key, _) in enumerate(ranked):
            abbrev = f"tpm2.{name}"
            if rank or name in RESERVED:
                suffix = types_of[(name, key)].most_common(1)[0][0]
                abbrev = f"tpm2.{name}.{suffix}"
            ftype, base, names, handle = key
            index[(name, key)] = len(specs) + 1
            specs.append(FieldSpec(abbrev, name, ftype, base, names, handle))
    if len({s.abbrev for s in specs}) != len(specs):
        raise ReferenceError_("two fields with one name")
    return specs, index


# ---------------------------------------------------------------- Lua output


def _lua_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _hex(value: int) -> str:
    return f"0x{value:x}" if value >= 0 else str(value)


def _lua_map(values: dict[int, str], indent: str = "    ") -> list[str]:
    items = [f"[{_hex(v)}]={_lua_str(n)}" for v, n in sorted(values.items())]
    lines, current = [], indent
    for item in items:
        if len(current) + len(item) + 2 > 100 and current.strip():
            lines.append(current.rstrip())
            current = indent
        current += item + ", "
    if current.strip():
        lines.append(current.rstrip())
    return lines


def render(ref: Reference, source: str) -> str:
    """The Lua module ``tables.lua``."""
    specs, index = assign_fields(ref)

    def fid(member: Member, fixed: bool = False) -> int:
        """The member's field (0: none, a union or the structure inside a TPM2B)."""
        return index.get((member.name, _field_key(member, ref.layouts[member.type], fixed)), 0)

    def member_lua(m: Member, fixed: int | None = None) -> str:
        parts = [_lua_str(m.name), _lua_str(m.type), str(fid(m, fixed is not None))]
        extra = []
        if isinstance(m.count, str):
            extra.append(f"count={_lua_str(m.count)}")
        elif isinstance(m.count, int):
            extra.append(f"count={m.count}")
        if m.selector:
            extra.append(f"sel={_lua_str(m.selector)}")
        if fixed is not None:
            extra.append(f"fixed={fixed}")
        return "{" + ", ".join(parts + extra) + "}"

    out = [
        "-- swtpm/tables.lua: the TPM 2.0 decoder's tables (constants, structures, commands, fields).",
        "--",
        "-- GENERATED by swtpm_extcap/wireshark/tablegen.py from the TCG TPM 2.0 reference",
        f"-- implementation ({REFERENCE_REPO} {source}): TpmTypes.h, TpmAlgorithmDefines.h,",
        "-- Marshal.c, Marshal_fp.h, CommandDispatchData.h and the commands' *_fp.h, themselves",
        "-- generated from the TPM 2.0 Library Specification's tables. DO NOT EDIT: change the",
        "-- generator and run `python -m swtpm_extcap.wireshark.tablegen` (tests/test_lua_tables.py",
        "-- checks that this file is its output).",
        "--",
        "-- types[name] = {kind, ...}: \"u\" a number (size, signed, names, bits, handle); \"s\" a",
        "-- structure (members); \"b\" a TPM2B of bytes; \"z\" a TPM2B holding a structure; \"x\" a union",
        "-- ({arms by selector value}). A member is {name, type, field, count=, sel=, fixed=}.",
        "-- Union arms left out (the reference names these types but does not define them):",
        "-- " + (", ".join(ref.missing) or "none") + ".",
        "local token = ...",
        "if token ~= \"swtpm-extcap\" then return end  -- run by Wireshark on its own: swtpm.lua loads it",
        "local T = {}",
        f"T.source = {_lua_str(REFERENCE_REPO + ' ' + source)}",
        "",
        "T.constants = {",
    ]
    used_tables = sorted({s.names for s in specs if s.names} | {"TPM_CC", "TPM_RC", "TPM_RH", "TPM_HT",
                                                                  "TPM_ST", "TPM_PT", "TPM_PT_PCR",
                                                                  "TPM_CAP", "TPM_ALG_ID", "TPM_NT"})
    for table in used_tables:
        out.append(f"  {table} = {{")
        out.extend(_lua_map(ref.constants.get(table, {})))
        out.append("  },")
    out.append("}")
    out.append("")
    out.append("-- bits[TPMA type] = {{mask, name}, ...} (a mask of several bits is a field of its own)")
    out.append("T.bits = {")
    for table in sorted(ref.bits):
        entries = ", ".join(f"{{{_hex(mask)}, {_lua_str(name)}}}" for mask, name in ref.bits[table])
        out.append(f"  {table} = {{{entries}}},")
    out.append("}")
    out.append("")
    out.append("T.types = {")
    for name in sorted(ref.layouts):
        layout = ref.layouts[name]
        if isinstance(layout, Scalar):
            parts = ['"u"', str(layout.size), "true" if layout.signed else "false",
                     _lua_str(layout.names) if layout.names else "nil",
                     _lua_str(layout.bits) if layout.bits else "nil",
                     "true" if layout.handle else "false"]
            out.append(f"  {name} = {{{', '.join(parts)}}},")
        elif isinstance(layout, Bytes):
            out.append(f'  {name} = {{"b", {_lua_str(layout.buffer)}}},')
        elif isinstance(layout, Sized):
            out.append(f'  {name} = {{"z", {member_lua(layout.inner)}}},')
        elif isinstance(layout, Struct):
            members = ", ".join(member_lua(m) for m in layout.members)
            out.append(f'  {name} = {{"s", {members}}},')
        else:
            arms = []
            for value, arm in layout.arms:
                body = member_lua(arm.member, arm.fixed) if arm.member is not None else "false"
                arms.append(f"[{_hex(value)}]={body}")
            out.append(f'  {name} = {{"x", {{{", ".join(arms)}}}}},')
    out.append("}")
    out.append("")
    out.append("-- the header and areas of Part 1, 18 (hand-written in the generator: HAND_)")
    out.append("T.parts = {")
    for key, group in (("command", HAND_COMMAND_HEADER), ("response", HAND_RESPONSE_HEADER)):
        out.append(f"  {key} = {{" + ", ".join(member_lua(Member(n, t)) for n, t in group) + "},")
    for name, type_ in HAND_AREAS:
        out.append(f"  {name} = {member_lua(Member(name, type_))},")
    out.append("}")
    out.append("")
    out.append("-- commands[code] = {name, request handles, request parameters, response handles,")
    out.append("-- response parameters}")
    out.append("T.commands = {")
    for code in sorted(ref.commands):
        cmd = ref.commands[code]
        groups = ["{" + ", ".join(member_lua(m) for m in group) + "}" for group in
                  (cmd.request_handles, cmd.request_params, cmd.response_handles, cmd.response_params)]
        out.append(f"  [{_hex(code)}] = {{{_lua_str(cmd.name)}, {', '.join(groups)}}},")
    out.append("}")
    out.append("")
    out.append("-- fields[i] = {abbrev, label, ftype, base, value names, handle}")
    out.append("T.fields = {")
    for spec in specs:
        names = _lua_str(spec.names) if spec.names else "nil"
        out.append(f"  {{{_lua_str(spec.abbrev)}, {_lua_str(spec.label)}, {_lua_str(spec.ftype)}, "
                   f"{_lua_str(spec.base)}, {names}, {'true' if spec.handle else 'false'}}},")
    out.append("}")
    out.append("")
    out.append("return T")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- command line


def generate(reference: Path) -> str:
    """The text of tables.lua for the reference files under ``reference``."""
    readme = reference / "README.md"
    commit = REFERENCE_COMMIT
    if readme.is_file():
        found = re.search(r"\b([0-9a-f]{40})\b", readme.read_text())
        commit = found.group(1) if found else commit
    return render(read_reference(reference), commit)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m swtpm_extcap.wireshark.tablegen",
        description="Write the Lua plugin's TPM 2.0 tables from the TCG reference headers.")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="the folder holding TPMCmd/ (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="default: %(default)s")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the output file differs")
    ns = parser.parse_args(argv)
    try:
        text = generate(ns.reference)
    except (OSError, ReferenceError_, KeyError, ValueError) as exc:
        print(f"tablegen: {exc}", file=sys.stderr)
        return 2
    if ns.check:
        current = ns.output.read_text() if ns.output.is_file() else ""
        if current != text:
            print(f"tablegen: {ns.output} is not the generator's output", file=sys.stderr)
            return 1
        return 0
    ns.output.parent.mkdir(parents=True, exist_ok=True)
    ns.output.write_text(text)
    print(f"tablegen: wrote {ns.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
