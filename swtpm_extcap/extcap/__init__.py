"""Wireshark's extcap protocol: the verbs, the options, the capture engine, fifo and signals."""
