"""The pcapng encapsulation: parser events -> Ethernet/IPv4/TCP frames -> pcapng blocks."""
