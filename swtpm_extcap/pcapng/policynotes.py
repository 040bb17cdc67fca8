"""Policy replay in the capture: ``policy: ...`` lines added to the pcapng comments of
response frames, beside the PCR replay's ``pcr:`` lines (:mod:`.notes` adds both).

One comment line per finding, on the frame of the TPM's response (hex lowercase, full
length); the Wireshark plugin shows them as ``swtpm.policy.explain`` (with an Expert
Info error and a line in its Statistics report) and ``swtpm.policy.check``::

    policy: explain: <one paragraph>
    policy: digest matches replay
    policy: digest MISMATCH (replay <hex>, TPM <hex>)
    policy: digest not known to the replay (<why>)

``explain`` is on a failed authorization's response, or on the response of the
FlushContext that ended an abandoned policy session; the ``digest`` lines are on
PolicyGetDigest responses. A session abandoned when its run or the log ends has no
response of its own: it is only in ``swtpm-extcap explain``'s output.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..pcr.findings import DigestCheck, Explanation, Finding


def policy_line(finding: Finding) -> str:
    """The comment line of one finding."""
    if type(finding) is Explanation:
        return "policy: explain: " + " ".join(finding.text.split())
    assert type(finding) is DigestCheck
    if finding.status == "match":
        return "policy: digest matches replay"
    if finding.status == "mismatch":
        assert finding.replay is not None
        return f"policy: digest MISMATCH (replay {finding.replay.hex()}, TPM {finding.tpm.hex()})"
    return f"policy: digest not known to the replay ({finding.why})"


def add_policy_lines(notes: dict[int, list[str]], findings: Iterable[Finding]) -> None:
    """Add the findings' lines to ``notes`` (log line of the frame -> comment lines)."""
    for finding in findings:
        if finding.answer:
            notes.setdefault(finding.answer, []).append(policy_line(finding))
