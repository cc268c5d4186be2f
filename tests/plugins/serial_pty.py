"""pytest fixtures: a private serial_pty for the tests (started on loopback, stopped after)."""
