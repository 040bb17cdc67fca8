"""The TPM command table and the capture filter (swtpm_extcap/extcap/capture_filter.py), in process.

That the names are the ones Wireshark's TPM dissector uses is checked against
tshark in test_extcap.py (a tool, so not in the fast tier).
"""

from __future__ import annotations

import pytest

from swtpm_extcap.extcap import capture_filter


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("", None),
        ("  ", None),
        ("TPM2_CC_Unseal,0x17e", {0x15E, 0x17E}),
        ("unseal pcr_read", {0x15E, 0x17E}),
        ("TPM2_PCR_Extend, TPM_CC_GetRandom,383", {0x182, 0x17B, 383}),
    ],
)
def test_capture_filter_parses(text: str, codes: set[int] | None) -> None:
    got = capture_filter.parse_capture_filter(text)
    assert (None if got is None else set(got)) == codes


def test_check_filter_is_empty_when_valid_else_one_line() -> None:
    assert capture_filter.check_filter("Unseal, 0x17e") == ""
    problem = capture_filter.check_filter("tcp port 2321")
    assert "'tcp'" in problem and "Unseal" in problem and "\n" not in problem


@pytest.mark.parametrize("text", ["0x100000000", "-1"])
def test_codes_out_of_range(text: str) -> None:
    assert "out of range" in capture_filter.check_filter(text)
