"""The capture options as data (swtpm_extcap/extcap/options.py): defaults, checks, in process."""

from __future__ import annotations

import pytest

from swtpm_extcap.extcap import options
from swtpm_extcap.errors import UsageError


def settings(*argv: str) -> options.CaptureSettings:
    base = ["--capture", "--extcap-interface", "swtpm-103", "--fifo", "/x", "--ctrl"]
    return options.build_settings(options.parse_request([*base, *argv]))


def test_config_defaults_are_what_a_capture_uses_without_options() -> None:
    """tshark passes only options that differ from a preference's default: the extcap's
    defaults for absent options must be the ones it advertises."""
    for name in ("swtpm-103", "swtpm-demo"):
        req = options.parse_request(["--capture", "--extcap-interface", name, "--fifo", "/x", "--ctrl"])
        got = options.build_settings(req)
        advertised = {o.call: o.default for o in options.options_for(name)}
        assert got.mode == advertised["--mode"] and str(got.pace_ms) == advertised["--pace-ms"]
        assert (got.start, got.runs, got.ctrl) == ("all", "all", True)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--mode", "sideways"], "--mode 'sideways' is not one of: follow, replay"),
        (["--pace-ms", "-5"], "--pace-ms '-5': give whole milliseconds from 0 to 10000"),
        (["--pace-ms", "ten"], "--pace-ms 'ten'"),
        (["--start", "new", "--mode", "replay"], "would show nothing"),
        (["--log-level", "loud"], "--log-level 'loud' is not one of"),
        (["--extcap-capture-filter", "tcp port 2321"], "unknown TPM command 'tcp'"),
    ],
)
def test_bad_options_are_one_usage_error_before_any_io(argv: list[str], words: str) -> None:
    with pytest.raises(UsageError) as exc:
        settings(*argv)
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_settings_carry_the_checked_values() -> None:
    got = settings("--start", "new", "--runs", "last", "--pace-ms", "25",
                   "--extcap-capture-filter", "Unseal")
    assert (got.start, got.runs, got.mode, got.pace_ms) == ("new", "last", "follow", 25)
    assert got.codes == frozenset({0x15E}) and got.filter_text == "Unseal"


def test_a_capture_needs_an_interface_and_a_fifo() -> None:
    with pytest.raises(UsageError, match="--extcap-interface"):
        options.build_settings(options.parse_request(["--capture", "--fifo", "/x"]))
    with pytest.raises(UsageError, match="--fifo"):
        options.build_settings(options.parse_request(["--capture", "--extcap-interface", "x"]))
