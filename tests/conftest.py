"""Shared test set-up: each external service has its own fixture plugin in tests/plugins."""

pytest_plugins = [
    "tests.plugins.mosquitto",
    "tests.plugins.pcscd",
    "tests.plugins.serial_pty",
    "tests.plugins.victoria",
]
