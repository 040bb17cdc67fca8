"""swtpm-extcap: SWTPM debug logs as live Wireshark capture interfaces."""

__version__ = "0.1.0"
