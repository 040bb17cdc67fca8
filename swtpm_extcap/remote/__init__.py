"""Remote hosts over SSH: the connection, the ``[[remote]]`` settings, discovery on the host."""
