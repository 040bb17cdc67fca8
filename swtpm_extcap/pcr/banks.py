"""The PCR banks of the current run and what changes them: set, unknown, extend, and
the check of a ``PCR_Read`` answer (the value operations of :class:`~.replay.Replayer`,
which reads them from parser events)."""

from __future__ import annotations

from collections.abc import Iterable

from .allocation import Allocation
from .types import (
    ALGORITHMS,
    HASHES,
    PCR_COUNT,
    Check,
    Outcome,
    Read,
    RunState,
    Slot,
    Step,
    _Fill,
    _response_params,
    bank_name,
    parse_pcr_read,
    parse_pcr_selection,
)


class Banks:
    """The PCR values of the current run (:attr:`state`), changed and checked."""

    def __init__(self, *, detail: bool = False) -> None:
        self.detail = detail
        self._parsed: dict[bytes, list[tuple[int, int, bytes]]] = {}
        #: PCR_Read answers (selection and values) that matched, valid until a PCR changes
        self._verified: dict[bytes, int] = {}
        self.state: RunState | None = None
        #: the PCR allocation as far as the log told it (persistent TPM state)
        self.allocation = Allocation()
        #: (PCR_Read selection, answer) pairs already learned from
        self._learned: set[bytes] = set()

    def _set(
        self,
        pcrs: Iterable[int],
        byte: int,
        last: int | None,
        line: int,
        answer: int,
        what: str,
        out: list[Outcome],
        *,
        emit: bool = True,
    ) -> None:
        self._fill(list(pcrs), _Fill(byte, last, line, ""), answer, what, out, emit)

    def _unknown(
        self,
        pcrs: Iterable[int],
        line: int,
        answer: int,
        why: str,
        out: list[Outcome],
        *,
        emit: bool = True,
    ) -> None:
        self._fill(list(pcrs), _Fill(None, None, line, why), answer, "unknown", out, emit)

    def _fill(
        self, pcrs: list[int], fill: _Fill, answer: int, what: str, out: list[Outcome], emit: bool
    ) -> None:
        """Give ``pcrs`` the value of ``fill`` in every bank (unknown where it has none)."""
        state = self.state
        assert state is not None
        self._verified.clear()
        for pcr in pcrs:
            state.fills[pcr] = fill
        for alg, slots in state.banks.items():
            size = ALGORITHMS[alg][1] if alg in ALGORITHMS else 0
            value = fill.value(size) if size else None
            why = fill.why if fill.byte is None else "" if size else f"unknown algorithm 0x{alg:04x}"
            shown = emit and self.shown(alg)
            slot = Slot(value, fill.line, why)  # one for all of them: slots are replaced, not changed
            for pcr in pcrs:
                slots[pcr] = slot
                if shown:
                    out.append(Step(state.run, fill.line, answer, what, pcr, alg, value, why=fill.why))

    def _extend(
        self,
        pcr: int,
        digests: list[tuple[int, bytes]],
        line: int,
        answer: int,
        command: str,
        out: list[Outcome],
    ) -> None:
        if pcr >= PCR_COUNT:  # TPM_RH_NULL: nothing extended
            return
        state = self.state
        assert state is not None
        self._verified.clear()
        state.extends += 1
        number = state.extends
        allocated = self.allocation.state
        for alg, digest in digests:
            if allocated(alg, pcr) is False:
                continue  # the TPM ignores a bank it has not allocated
            slots = state.bank(alg)
            slot = slots[pcr]
            state.seen.add(alg)
            fn = HASHES.get(alg)
            if slot.value is None:
                value, why = None, slot.why
            elif fn is None:
                value, why = None, f"this Python cannot compute {bank_name(alg)}"
            else:
                value, why = fn(slot.value + digest), ""
            slots[pcr] = Slot(value, line, why)
            out.append(Step(state.run, line, answer, "extend", pcr, alg, value, digest, number, command, why))

    def _read(self, asked: bytes, response: bytes, line: int, answer: int, out: list[Outcome]) -> None:
        """A PCR_Read answered success: ``asked`` is the command's selection (its
        parameters), checked values and learned allocation."""
        state = self.state
        assert state is not None
        # the same selection and values come back again and again: parse each once
        key = response[_response_params(response) + 4 :]
        pair = asked + key
        if pair not in self._learned:
            if len(self._learned) > 256:
                self._learned.clear()
            returned = parse_pcr_read(response)  # raises on a malformed answer: nothing learned
            self.allocation.learn_read(parse_pcr_selection(asked, 0)[0], [(alg, pcr) for pcr, alg, _ in returned])
            self._learned.add(pair)
        known = self._verified.get(key)
        if known is not None and not self.detail:  # the same answer as before, nothing changed since
            out.append(Read(state.run, line, answer, known, known))
            return
        values = self._parsed.get(key)
        if values is None:
            if len(self._parsed) > 256:
                self._parsed.clear()
            values = self._parsed[key] = parse_pcr_read(response)
        banks = state.banks
        seen = state.seen
        matched = 0
        for pcr, alg, value in values:
            slots = banks.get(alg) or state.bank(alg)
            if alg not in seen:
                seen.add(alg)
            slot = slots[pcr]
            if slot.value == value:
                matched += 1
                if self.detail:
                    out.append(Check(state.run, line, answer, pcr, alg, value, value, slot.line, "match"))
            elif slot.value is None:
                out.append(Check(state.run, line, answer, pcr, alg, value, None, 0, "learned", slot.why))
                slots[pcr] = Slot(value, answer, "")
            else:  # go on from what the TPM says: one finding, not a cascade
                out.append(Check(state.run, line, answer, pcr, alg, value, slot.value, slot.line, "mismatch"))
                slots[pcr] = Slot(value, answer, "")
        out.append(Read(state.run, line, answer, len(values), matched))
        if matched == len(values):
            if len(self._verified) > 256:
                self._verified.clear()
            self._verified[key] = matched
        else:
            self._verified.clear()  # learned or corrected values: older answers are stale

    def shown(self, alg: int) -> bool:
        """A bank worth reporting: allocated (when known), else used in this run."""
        state = self.state
        allocated = self.allocation.bank(alg)
        if allocated is not None:
            return allocated
        return state is not None and alg in state.seen

    @property
    def started(self) -> bool:
        return self.state is not None and self.state.started
