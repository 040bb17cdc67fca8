"""The PCR replay: parser events -> the PCR banks of each run, checks, reports, diffs."""
