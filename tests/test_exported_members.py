"""Each public package's ``__all__`` is its whole public surface, no more and no less.

Callers import from the package, never from its modules, so ``__all__`` must name only what
exists and everything public the package offers: a helper the package imports for its own
use takes a leading underscore. The names are read from each package at run time, so the
test follows the packages as they change (after httpx's ``tests/test_exported_members.py``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

PUBLIC_PACKAGES = (
    "dockgate.gateway.sun",
    "dockgate.gateway.rules",
    "dockgate.gateway.protocol",
    "dockgate.gateway.store",
    "dockgate.gateway.flow",
    "dockgate.gateway.outbox",
    "dockgate.api",
    "dockgate.drivers.mqtt",
    "dockgate.drivers.readers",
    "dockgate.gateway.provisioning",
)


def declared(package: ModuleType) -> list[str]:
    """The package's ``__all__``, failing the test when it has none."""
    names = getattr(package, "__all__", None)
    assert names is not None, f"{package.__name__} has no __all__"
    return list(names)


def public_members(package: ModuleType) -> set[str]:
    """Names the package binds without a leading underscore, less modules and compiler flags.

    Submodules are bound as a side effect of importing them and ``from __future__ import
    annotations`` binds ``annotations``: neither is part of the package's offer.
    """
    return {
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and type(value).__module__ != "__future__"
    }


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_all_lists_only_names_that_exist_once(name: str) -> None:
    package = importlib.import_module(name)
    names = declared(package)
    assert [n for n in names if not hasattr(package, n)] == []
    assert sorted({n for n in names if names.count(n) > 1}) == []


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_every_public_member_is_in_all(name: str) -> None:
    package = importlib.import_module(name)
    assert sorted(public_members(package) - set(declared(package))) == []


def test_the_check_sees_an_unlisted_name_and_ignores_modules() -> None:
    package = ModuleType("dockgate.example")
    exec(  # a package body as a real one reads: a future import, a submodule, helpers
        "from __future__ import annotations\n"
        "import json as submodule\n"
        "__all__ = ['Listed']\n"
        "class Listed: ...\n"
        "def unlisted(): ...\n"
        "def _private(): ...\n",
        vars(package),
    )
    assert public_members(package) - set(declared(package)) == {"unlisted"}
