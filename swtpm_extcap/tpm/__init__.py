"""TPM 2.0 vocabulary, pure: command codes and names, response codes, hash algorithms, the
wire structures the replays read, and the tables generated from the specification."""
