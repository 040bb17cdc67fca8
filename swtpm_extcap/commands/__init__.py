"""The commands' I/O edges: ``convert`` and ``pcrs`` (files, stdin, stdout)."""
