"""The Lua plugin's TPM 2.0 tables, written from the TCG reference implementation's headers.

``python -m swtpm_extcap.wireshark.tablegen [--reference DIR] [--output FILE] [--check]``

:mod:`swtpm_extcap.tpm.reference` reads the reference (the TPM 2.0 Library Specification's
tables in machine-readable form); this module turns what it read into ``swtpm/tables.lua``,
the plugin's data, which the hand-written Lua engine in ``swtpm/walk.lua`` walks.

Field names are the specification's member names (``tpm2.pcrSelectionIn``,
``tpm2.nvIndex``); a member name that means different things in different structures gets
its type as a suffix for the less common meanings.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..tpm.cheaders import ReferenceError_
from ..tpm.layouts import Bytes, Layout, Member, Scalar, Sized, Struct, Union_
from ..tpm.reference import (DEFAULT_REFERENCE, HAND_AREAS, HAND_COMMAND_HEADER, HAND_RESPONSE_HEADER,
                             REFERENCE_REPO, Reference, read_reference, source_commit)

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "swtpm" / "tables.lua"

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
    return render(read_reference(reference), source_commit(reference))

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
