"""pytest fixtures: a private victoria for the tests (started on loopback, stopped after)."""
