"""Shared test set-up: each external service has its own fixture plugin in tests/plugins.

Fixtures shared by several test modules live here or in a plugin listed below; plain shared
helpers (keys, builders, fakes, the system-test harness) live in ``tests/support``. A test
module never imports another test module.
"""

pytest_plugins = [
    "tests.plugins.flow",
    "tests.plugins.mosquitto",
    "tests.plugins.pcscd",
    "tests.plugins.postgres",
    "tests.plugins.serial_pty",
    "tests.plugins.victoria",
]
