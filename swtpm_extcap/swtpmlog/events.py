"""What the swtpm log parser emits: records, run starts and defects, and the kinds of each.

The vocabulary shared by the parser (:mod:`swtpm_extcap.swtpmlog.parser`, which
re-exports it), the framer, the pipeline and the capture engine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple


class Kind(enum.Enum):
    """What a record is: direction and channel. The values of all but
    :attr:`STRAY` are the labels swtpm writes in a record header."""

    TPM_COMMAND = "SWTPM_IO_Read"
    TPM_RESPONSE = "SWTPM_IO_Write"
    CTRL_COMMAND = "Ctrl Cmd"
    CTRL_RESPONSE = "Ctrl Rsp"
    CTRL_CONTINUED = "Ctrl Rsp Continued"
    #: hex lines outside any record (a lost header, say): no label, never TPM
    STRAY = "stray hex"

    # members are singletons: identity hashing is correct and, unlike Enum's
    # own __hash__ (Python code), costs nothing in the per-record dict lookups
    __hash__ = object.__hash__

    @property
    def is_tpm(self) -> bool:
        return self is Kind.TPM_COMMAND or self is Kind.TPM_RESPONSE

    @property
    def is_ctrl(self) -> bool:
        return not (self.is_tpm or self is Kind.STRAY)

    @property
    def to_server(self) -> bool:
        """True for client -> swtpm (commands, stray hex), False for swtpm -> client."""
        return self is Kind.TPM_COMMAND or self is Kind.CTRL_COMMAND or self is Kind.STRAY


#: the record labels of a header, the one list of them: label -> kind
LABELS: dict[str, Kind] = {kind.value: kind for kind in Kind if kind is not Kind.STRAY}

class DefectKind(str, enum.Enum):
    """The kinds of damage the parser reports."""

    SHORT = "short"  # fewer bytes than the header says, then another header
    LONG = "long"  # more bytes than the header says
    CUT = "cut"  # the input ended inside a record
    JUNK = "junk"  # a line inside a record that is not hex
    STRAY = "stray"  # hex data outside any record
    BAD_HEADER = "bad-header"  # a record header with an unreadable length
    LONG_LINE = "long-line"  # a line longer than MAX_LINE: only its start is read
    OVERSIZE = "oversize"  # more bytes than MAX_RECORD: only the first are kept
    OMITTED = "omitted"  # stands for ``count`` more defects of the record, left out


@dataclass(frozen=True, slots=True)
class Defect:
    """One piece of damage, at a 1-based line of the log.

    ``count`` is how many defects this one stands for: 1, except for an
    :attr:`DefectKind.OMITTED` one, which counts those left out of a record.
    """

    line: int
    kind: DefectKind
    detail: str
    count: int = 1

    def __str__(self) -> str:
        return f"line {self.line}: {self.kind.value}: {self.detail}"


@dataclass(frozen=True, slots=True)
class RunStart:
    """A new swtpm run (process start or TPM power-on) begins here."""

    run: int
    line: int
    prefix: str | None
    epoch: int | None
    reason: str


class Record(NamedTuple):
    """One ``read()`` or ``write()`` by swtpm, exactly as logged.

    ``declared`` is the length its header gives, None when it has none (an
    unreadable length, stray hex). A NamedTuple rather than a frozen
    dataclass: a 200 MB log has ~500,000 records, and a frozen dataclass costs
    four times as much to build.
    """

    kind: Kind
    data: bytes
    line: int
    run: int
    declared: int | None
    defects: tuple[Defect, ...] = ()
    last_line: int = 0

    @property
    def intact(self) -> bool:
        """The logged bytes are all there: as many as the header says."""
        return len(self.data) == self.declared and not any(
            d.kind in _DAMAGE for d in self.defects
        )


_DAMAGE = frozenset(
    {DefectKind.SHORT, DefectKind.LONG, DefectKind.CUT, DefectKind.STRAY, DefectKind.OVERSIZE}
)

Event = RunStart | Record | Defect
