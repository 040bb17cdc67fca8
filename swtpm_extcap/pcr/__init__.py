"""The replays, pure: parser events -> the PCR banks of each run (checks, reports, diffs),
and the policy sessions beside them (digests, self-checks, why an authorization failed)."""
