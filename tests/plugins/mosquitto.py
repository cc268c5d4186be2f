"""pytest fixtures: a private mosquitto for the tests (started on loopback, stopped after).

- `mosquitto`: an anonymous broker, one per test (cheap: ~20 ms), restartable.
- `mosquitto_auth`: a broker with a password file and per-device ACLs for a small fleet
  (two scooters, a station, two readers); `mosquitto_auth.users` maps usernames to
  passwords, `mosquitto_auth.devices` lists the fleet.

- `scripted_device`: a factory of :class:`tests.support.mqtt.ScriptedDevice` (a paho device
  whose replies the test scripts) on the `mosquitto` broker.

A missing mosquitto binary fails the test (ServiceError), it never skips.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dockgate.gateway.protocol import DeviceRef, acl_text, username
from dockgate.sim.services.mosquitto import Mosquitto
from tests.support.mqtt import ScriptedDevice

AUTH_FLEET = (
    DeviceRef.vehicle(1, "SXB001"),
    DeviceRef.vehicle(1, "SXB002"),
    DeviceRef.station(1, "ST01"),
    DeviceRef.reader(1, "R01"),  # readers: each may write only its own tap topic
    DeviceRef.reader(1, "R02"),
)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    broker = Mosquitto()
    broker.start()
    try:
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture
def mosquitto_auth() -> Iterator[Mosquitto]:
    users = {"gateway": secrets.token_urlsafe(16)}
    users.update({username(d): secrets.token_urlsafe(16) for d in AUTH_FLEET})
    broker = Mosquitto(users=users, acl=acl_text(AUTH_FLEET))
    broker.users = users  # type: ignore[attr-defined]
    broker.devices = AUTH_FLEET  # type: ignore[attr-defined]
    broker.start()
    try:
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture
def scripted_device(mosquitto: Mosquitto) -> Iterator[Callable[..., ScriptedDevice]]:
    """Factory: ``scripted_device(DeviceRef..., behaviour=..., outcome=...)``; closed after."""
    made: list[ScriptedDevice] = []

    def make(device: DeviceRef, **kwargs: Any) -> ScriptedDevice:
        dev = ScriptedDevice(mosquitto, device, **kwargs)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.close()
