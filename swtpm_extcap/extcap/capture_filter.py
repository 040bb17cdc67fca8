"""The capture filter: which parser events reach the framer.

A capture filter here is a list of TPM command names or codes
(:func:`parse_capture_filter`); the capture keeps those commands and their
responses. Anything else is rejected with one line (BPF makes no sense here:
every frame is synthetic). The capture engine applies it
(:class:`swtpm_extcap.extcap.capture.Selection`).
"""

from __future__ import annotations

from ..errors import UsageError, UserError
from ..tpm.commands import tpm2_command_codes

FILTER_HELP = (
    "a capture filter here is a list of TPM commands to keep, with their responses:"
    " names (Unseal, TPM2_CC_Unseal) or codes (0x15e), separated by commas"
)


def parse_capture_filter(text: str) -> frozenset[int] | None:
    """``"TPM2_CC_Unseal, 0x17e"`` -> ``{0x15E, 0x17E}``; empty -> ``None`` (keep all).

    Each item is a TPM 2.0 command name, with or without a ``TPM2_CC_``,
    ``TPM_CC_`` or ``TPM2_`` prefix and in any case, or a command code
    (``0x17e``, or decimal; TPM 1.2 ordinals too). Items are separated by
    commas or blanks. The capture keeps the TPM commands named and the
    response that follows each; everything else, control-channel messages
    included, is left out.
    """
    items = text.replace(",", " ").split()
    if not items:
        return None
    names = tpm2_command_codes()
    codes: set[int] = set()
    for item in items:
        low = item.lower()
        for prefix in ("tpm2_cc_", "tpm_cc_", "tpm2_"):
            if low.startswith(prefix):
                low = low[len(prefix):]
                break
        if low in names:
            codes.add(names[low])
            continue
        try:
            code = int(low, 0)
        except ValueError:
            raise UsageError(f"unknown TPM command {item!r} in the capture filter; {FILTER_HELP}") from None
        if not 0 <= code <= 0xFFFFFFFF:
            raise UsageError(f"TPM command code {item!r} is out of range; {FILTER_HELP}")
        codes.add(code)
    return frozenset(codes)


def check_filter(text: str) -> str:
    """Wireshark's filter check: "" when ``text`` is valid, else one line saying why."""
    try:
        parse_capture_filter(text)
    except UserError as exc:
        return str(exc)
    return ""
