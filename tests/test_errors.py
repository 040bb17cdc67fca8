"""errors: the one stderr line, and nothing else on stderr (warnings go to the debug log)."""

from __future__ import annotations

import logging
import warnings

import pytest

from swtpm_extcap.errors import LOGGER, route_warnings

pytestmark = pytest.mark.fast


def test_a_warning_after_route_warnings_is_a_debug_log_record_not_stderr(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        route_warnings()
        with caplog.at_level(logging.INFO, logger=LOGGER):
            warnings.warn("DSA is deprecated", DeprecationWarning, stacklevel=1)
    assert capsys.readouterr().err == ""
    [record] = [r for r in caplog.records if r.name == LOGGER + ".warnings"]
    assert "DeprecationWarning: DSA is deprecated" in record.getMessage()

