"""pytest fixtures: a private mosquitto for the tests (started on loopback, stopped after)."""
