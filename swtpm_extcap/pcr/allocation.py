"""What the log tells of the TPM's PCR allocation: which banks (and PCRs in them) exist.

A TPM 2.0 keeps a PCR only in the banks allocated for it (``TPM2_PCR_Allocate``,
persistent state). The replay learns the allocation from three places, and
never guesses it:

* ``GetCapability(TPM_CAP_PCRS)``: the whole current allocation, every bank
  the TPM implements (an empty selection: a bank with no PCR allocated);
* each ``PCR_Read``: the values it returns are of allocated PCRs; a PCR it was
  asked for and left out of ``pcrSelectionOut`` is not allocated in that bank
  (the TPM filters the selection by the allocation, libtpms ``FilterPcr``), unless
  the answer is full (8 digests) and the PCR comes after the last one returned:
  the TPM stops there, so nothing is learned of those;
* ``PCR_Allocate`` answered success: the new allocation, which takes effect at
  the next TPM reset (``_TPM_Init``: ``CMD_INIT``, or a new swtpm process, i.e.
  a new run); a bank it does not name keeps its allocation.

Per bank and PCR, :meth:`Allocation.state` is True (allocated), False (not
allocated) or None (the log has not said).
"""

from __future__ import annotations

from collections.abc import Iterable

from .types import PCR_COUNT

#: most digests one PCR_Read returns (TPML_DIGEST of the PCR_Read response)
MAX_READ_DIGESTS = 8

Selection = list[tuple[int, list[int]]]
"""A TPML_PCR_SELECTION: [(TPM_ALG_ID, [PCR, ...])] in its order."""


class Allocation:
    """The PCR allocation as far as the log has told it (see the module doc)."""

    __slots__ = ("on", "off", "pending", "_whole")

    def __init__(self) -> None:
        #: TPM_ALG_ID -> PCRs known to be allocated / known not to be
        self.on: dict[int, set[int]] = {}
        self.off: dict[int, set[int]] = {}
        #: a PCR_Allocate's selection, in effect from the next TPM reset
        self.pending: Selection | None = None
        #: the last whole allocation set, while nothing else changed it (a log may ask often)
        self._whole: Selection | None = None

    def state(self, alg: int, pcr: int) -> bool | None:
        """True: allocated; False: not allocated; None: not known."""
        if pcr in self.on.get(alg, ()):
            return True
        if pcr in self.off.get(alg, ()):
            return False
        return None

    def bank(self, alg: int) -> bool | None:
        """True: some PCR of the bank is allocated; False: none is (every PCR
        known not allocated); None: not known."""
        if self.on.get(alg):
            return True
        if len(self.off.get(alg, ())) == PCR_COUNT:
            return False
        return None

    def unallocated(self, alg: int) -> list[int]:
        """The PCRs of a bank known not to be allocated, in order."""
        return sorted(self.off.get(alg, ()))

    def _set(self, alg: int, pcrs: Iterable[int], allocated: bool) -> None:
        pcrs = [p for p in pcrs if 0 <= p < PCR_COUNT]
        if not pcrs:
            return
        self._whole = None
        yes, no = (self.on, self.off) if allocated else (self.off, self.on)
        yes.setdefault(alg, set()).update(pcrs)
        other = no.get(alg)
        if other:
            other.difference_update(pcrs)

    def set_all(self, selection: Selection, implemented: Iterable[int]) -> None:
        """GetCapability(PCRS): the whole allocation; a bank it does not list
        (of ``implemented``) has no PCR allocated."""
        if selection == self._whole:
            return
        listed = dict(selection)
        for alg in {*implemented, *listed}:
            pcrs = set(listed.get(alg, ()))
            self._set(alg, pcrs, True)
            self._set(alg, set(range(PCR_COUNT)) - pcrs, False)
        self._whole = selection

    def learn_read(self, asked: Selection, returned: Iterable[tuple[int, int]]) -> None:
        """A PCR_Read: ``asked`` is the command's selection, ``returned`` the
        (TPM_ALG_ID, PCR) of each value the answer holds."""
        got = set(returned)
        for alg, pcr in got:
            self._set(alg, [pcr], True)
        full = len(got) >= MAX_READ_DIGESTS
        # the TPM walks the selection in order, PCRs ascending, and stops after 8 digests
        order = [(alg, pcr) for alg, pcrs in asked for pcr in sorted(set(pcrs)) if pcr < PCR_COUNT]
        last = max((i for i, key in enumerate(order) if key in got), default=-1)
        for i, (alg, pcr) in enumerate(order):
            if (alg, pcr) not in got and (not full or i < last):
                self._set(alg, [pcr], False)

    def allocate(self, selection: Selection) -> None:
        """A PCR_Allocate the TPM accepted: in effect from the next reset."""
        merged = dict(self.pending or [])
        merged.update(dict(selection))
        self.pending = list(merged.items())

    def reset(self) -> bool:
        """A TPM reset (``_TPM_Init``): a pending PCR_Allocate takes effect. True if one did."""
        pending, self.pending = self.pending, None
        if pending is None:
            return False
        for alg, pcrs in pending:
            self.on.pop(alg, None)
            self.off.pop(alg, None)
            self._set(alg, pcrs, True)
            self._set(alg, set(range(PCR_COUNT)) - set(pcrs), False)
        return True
