"""pytest fixtures: a private pcscd for the tests (started on loopback, stopped after)."""
