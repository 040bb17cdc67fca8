"""The Wireshark side: the Lua plugin, the SWTPM profile, and their installer."""
