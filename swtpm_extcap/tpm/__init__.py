"""TPM 2.0 vocabulary: command codes and their names (pure, no I/O)."""
