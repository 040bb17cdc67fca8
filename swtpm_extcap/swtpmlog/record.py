"""A record the parser is still taking lines for (or a run of stray hex): its bytes,
bounded, its defects, bounded, and the defects it gets when it ends."""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import Defect, DefectKind, Kind

#: bytes kept of one record or one run of stray hex (swtpm's buffer is 4 KiB)
MAX_RECORD = 1 << 20
#: defects of a record's lines (junk, overlong lines) kept; the rest are counted
MAX_DEFECTS = 8


@dataclass(slots=True)
class OpenRecord:
    """A record (or a run of stray hex) still taking lines."""

    kind: Kind
    line: int
    declared: int | None
    buf: bytearray = field(default_factory=bytearray)  # its bytes (at most MAX_RECORD)
    got: int = 0  # bytes seen
    hex_lines: int = 0  # hex lines taken
    defects: list[Defect] = field(default_factory=list)
    omitted: int = 0  # defects of its lines beyond MAX_DEFECTS
    last_line: int = 0
    over: int = 0  # the line where it passed its declared length (0: not yet)

    @property
    def kept(self) -> int:
        return len(self.buf)

    def add(self, chunk: bytes, n: int) -> None:
        """One hex line's bytes; beyond MAX_RECORD they are only counted."""
        self.got += len(chunk)
        self.hex_lines += 1
        self.last_line = n
        room = MAX_RECORD - len(self.buf)
        if room > 0:
            self.buf += chunk if len(chunk) <= room else chunk[:room]

    def flag(self, n: int, kind: DefectKind, detail: str) -> None:
        """A defect of one of its lines: the first MAX_DEFECTS kept, the rest counted."""
        if len(self.defects) < MAX_DEFECTS:
            self.defects.append(Defect(n, kind, detail))
        else:
            self.omitted += 1

    def closing_defects(self) -> tuple[Defect, ...]:
        """Its defects, with those of how it ended: longer than its header says,
        more bytes than it keeps, defects left out."""
        defects = self.defects
        if self.over:
            defects.append(
                Defect(
                    self.over,
                    DefectKind.LONG,
                    f"{self.kind.value} record of line {self.line} has {self.got} bytes"
                    f" (to line {self.last_line}), its header says {self.declared}",
                )
            )
        if self.got > self.kept:
            defects.append(
                Defect(
                    self.line,
                    DefectKind.OVERSIZE,
                    f"{self.got} bytes (to line {self.last_line}); only the first {self.kept} are kept",
                )
            )
        if self.omitted:
            defects.append(
                Defect(
                    self.last_line,
                    DefectKind.OMITTED,
                    f"{self.omitted} more defects of the record of line {self.line} left out",
                    self.omitted,
                )
            )
        return tuple(defects)

    def stray_defect(self) -> Defect:
        """What a run of stray hex is: one defect, however many lines it has."""
        among = self.last_line - self.line + 1 - self.hex_lines
        return Defect(
            self.line,
            DefectKind.STRAY,
            f"{self.got} bytes of hex outside any record (lines {self.line}-{self.last_line}"
            + (f", {self.hex_lines} hex lines and {among} other lines" if among else "")
            + "); kept apart as stray hex, not as a TPM message",
        )
