#!/usr/bin/env python3
"""Compare what the Lua plugin puts into two PDML files of one capture (e.g. Wireshark 4.0 and 4.4).

    bench/compare_pdml.py A.pdml B.pdml      (exit 0: the same decode)

The items of the plugin's protocols (tpm2, swtpm, tpm12, swtpm.ctrl and the tpm.*
names it shares) are compared: name, label, shown value, raw value, position,
size, nesting. Not compared, because the two Wireshark versions write them
differently whatever the dissector does: how a label longer than 240
characters is cut (4.0: silently, or "[truncated]" before a long string's colon;
4.4: "[...]" here or there, at its own length: of a label of 200 characters or more
the name before the colon is compared, and the shown value), the shown text of long byte strings, and
booleans shown as 1/0 (4.0) or True/False (4.4).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

OURS = {"tpm2", "swtpm", "tpm12", "swtpm.ctrl"}


def items(path: str) -> list[list[tuple[object, ...]]]:
    out = []
    for _, packet in ET.iterparse(path):
        if packet.tag != "packet":
            continue
        rows: list[tuple[object, ...]] = []

        def walk(el: ET.Element, depth: int) -> None:
            for c in el:
                if c.tag not in ("field", "proto"):
                    continue
                raw = c.get("showname") or ""
                label = " ".join(raw.replace("[\u2026]", "").replace("\u2026", "").replace("[truncated]", "").split())
                show = {"True": "1", "False": "0"}.get(c.get("show") or "", c.get("show"))
                if len(c.get("value") or "") > 60:
                    label, show = label.split(":")[0].strip(), None
                elif len(label) >= 200:  # a long label: each version cuts it its own way
                    label = label.split(":")[0].strip()
                rows.append((depth, c.tag, c.get("name"), label, show, c.get("value"), c.get("pos"), c.get("size")))
                walk(c, depth + 1)

        for proto in packet.findall("proto"):
            if proto.get("name") in OURS:
                rows.append((0, "proto", proto.get("name"), None, None, None, proto.get("pos"), proto.get("size")))
                walk(proto, 1)
        out.append(rows)
        packet.clear()
    return out


def main(argv: list[str]) -> int:
    a, b = items(argv[1]), items(argv[2])
    differing = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    print(f"{len(a)} and {len(b)} packets, {sum(map(len, a))} items of the plugin; differing packets: {len(differing)}")
    for i in differing[:3]:
        for x, y in zip(a[i], b[i]):
            if x != y:
                print(f"  packet {i + 1}:\n    {x}\n    {y}")
                break
    return 0 if not differing and len(a) == len(b) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
