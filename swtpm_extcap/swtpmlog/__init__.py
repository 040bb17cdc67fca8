"""The swtpm log format: the pure, incremental parser, its events, the line layout, log levels."""
