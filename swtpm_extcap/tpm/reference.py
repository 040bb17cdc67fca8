"""The TPM 2.0 Library Specification in machine-readable form: the TCG reference
implementation's headers, read once into data for both generated tables.

The TCG's TPM 2.0 reference implementation (``TrustedComputingGroup/TPM``) ships C files
that are themselves generated from the specification's tables. :func:`read_reference`
reads them into a :class:`Reference`:

* constants and bit fields (``TpmTypes.h``): ``#define NAME (TYPE)(expr)`` names each
  value of TPM_ALG_ID, TPM_CC, TPM_RC, TPM_ST, TPM_CAP, TPM_PT, TPM_RH, TPM_HT, ... and
  each bit of the TPMA_* types;
* how every structure is marshaled (``Marshal.c``, ``Marshal_fp.h``; :mod:`.layouts`);
* the command signatures: each command's ``<Command>_In`` and ``_Out`` members in wire
  order with their names (``prototypes/<Command>_fp.h``), split into handles and
  parameters by ``CommandDispatchData.h`` (``_H_UNMARSHAL`` / ``_P_UNMARSHAL``), or by the
  ``RC_<Command>_<name>`` modifiers (``TPM_RC_H`` / ``TPM_RC_P``) for a command the
  reference's profile leaves out of its dispatch table;
* each command's attributes (``CommandAttributeData.h``): its handle count, whether the
  response has a handle, and which handles need authorization in which role;
* digest sizes of the fixed-size union arms (``TpmAlgorithmDefines.h``).

Two emitters write tables from it: ``swtpm_extcap.wireshark.tablegen`` (the Lua plugin's
``swtpm/tables.lua``) and ``tools/gen_tpm_tables.py`` (``swtpm_extcap/tpm/tables.py`` for
the replays). Nothing here is typed by hand except the few facts the headers do not
carry, each marked ``HAND_``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .cheaders import Macros, ReferenceError_, read_functions
from .layouts import Layout, Layouts, Member

#: the reference implementation the committed tables come from
REFERENCE_REPO = "TrustedComputingGroup/TPM"
REFERENCE_COMMIT = "3b1f0e623f244abe2015df9e3ba86de5c9118524"
#: the checkout's copy of the reference's files (a clean clone regenerates from it)
DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "data" / "tpm-reference"

TYPES_H = "TPMCmd/tpm/include/tpm_public/TpmTypes.h"
ALGORITHMS_H = "TPMCmd/tpm/include/tpm_public/TpmAlgorithmDefines.h"
MARSHAL_C = "TPMCmd/tpm/src/support/Marshal.c"
MARSHAL_H = "TPMCmd/tpm/include/private/prototypes/Marshal_fp.h"
DISPATCH_H = "TPMCmd/tpm/include/private/CommandDispatchData.h"
ATTRIBUTES_H = "TPMCmd/tpm/include/private/CommandAttributeData.h"
PROTOTYPES = "TPMCmd/tpm/include/private/prototypes"

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
    """What the readers found: constants, layouts, commands and their attributes."""

    constants: dict[str, dict[int, str]] = field(default_factory=dict)
    #: TYPE -> every (name, value) of its constants in file order, aliases included
    named: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    bits: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    layouts: dict[str, Layout] = field(default_factory=dict)
    commands: dict[int, Command] = field(default_factory=dict)
    all_cc: dict[str, int] = field(default_factory=dict)
    #: command code -> (handles, response handle, roles): one letter per handle, U(SER),
    #: A(DMIN), D(UP) for a handle that needs authorization, ``-`` for one that does not
    attributes: dict[int, tuple[int, int, str]] = field(default_factory=dict)
    #: union arms left out: types the reference names but does not define
    missing: list[str] = field(default_factory=list)


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
        ref.named.setdefault(type_, []).append((name, value))
        ref.constants.setdefault(type_, {}).setdefault(value, name)
    for type_, names in HAND_CONSTANTS.items():
        ref.constants[type_] = dict(names)
    # aliases too: TPM_CC_MAC beside TPM_CC_HMAC
    ref.all_cc = {name[len("TPM_CC_"):]: value for value, name in ref.constants["TPM_CC"].items()}
    for name, value in ref.named["TPM_CC"]:
        ref.all_cc.setdefault(name[len("TPM_CC_"):], value)


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



_ATTRIBUTES = re.compile(
    r"TPMA_CC_INITIALIZER\(0x([0-9A-Fa-f]+), *\d+, *\d+, *\d+, *\d+, *(\d+), *(\d+),")
_FLAGS = re.compile(r"// 0x([0-9A-Fa-f]{4})\s*\n\s*\(([^)]*)\)")


def read_attributes(source: str) -> dict[int, tuple[int, int, str]]:
    """``CommandAttributeData.h``: command code -> (handles, response handle, roles)."""
    flags_of = {int(code, 16): set(flags.replace(" ", "").split("+"))
                for code, flags in _FLAGS.findall(source)}
    out = {}
    for code_hex, handles_text, rhandle_text in _ATTRIBUTES.findall(source):
        code, handles = int(code_hex, 16), int(handles_text)
        flags = flags_of.get(code, set())
        first = "U" if "HANDLE_1_USER" in flags else "A" if "HANDLE_1_ADMIN" in flags else (
            "D" if "HANDLE_1_DUP" in flags else "-")
        second = "U" if "HANDLE_2_USER" in flags else "-"
        out[code] = (handles, int(rhandle_text), (first + second + "-" * 3)[:handles])
    return dict(sorted(out.items()))


def read_reference(reference: Path = DEFAULT_REFERENCE) -> Reference:
    """Everything the tables need, from the reference files under ``reference``."""
    ref = Reference()
    macros = Macros()
    for name in (ALGORITHMS_H, TYPES_H):
        macros.read((reference / name).read_text())
    read_constants(macros, ref)
    read_commands(reference, ref)
    ref.attributes = read_attributes((reference / ATTRIBUTES_H).read_text())
    bodies = read_functions((reference / name).read_text() for name in (MARSHAL_C, MARSHAL_H))
    layouts = Layouts(bodies, macros, ref.constants, ref.bits)
    roots = [m.type for cmd in ref.commands.values() for m in
             cmd.request_handles + cmd.request_params + cmd.response_handles + cmd.response_params]
    roots += [t for _, t in HAND_COMMAND_HEADER + HAND_RESPONSE_HEADER + HAND_AREAS]
    for type_ in roots:
        layouts.resolve(type_)
    ref.layouts = layouts.layouts
    ref.missing = sorted(layouts.missing)
    return ref


def source_commit(reference: Path) -> str:
    """The reference's commit, as its README names it (else the committed tables' one)."""
    readme = reference / "README.md"
    if readme.is_file():
        found = re.search(r"\b([0-9a-f]{40})\b", readme.read_text())
        if found:
            return found.group(1)
    return REFERENCE_COMMIT
