"""A station controller's own NFC reader, simulated: taps of simulated tags onto the broker.

A station controller with a reader does what a standby machine does with one: it runs the
publisher of ``dockgate reader publish`` and holds no key. Here the reader and the tag are
simulated (``present`` reads the tag's next SUN message, as the reader's NDEF read would)
and the publisher is the real one, so the simulated fleet's taps travel the broker path the
gateway verifies: ``dockgate/<network>/reader/<id>/tap``, QoS 1, the reader's own account.

    async with SimReaderController("ST01-R", Broker("127.0.0.1", port)) as reader:
        reader.present(tag)  # an SdmTag (or an Ntag424Tag's ``source``)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Self

from pydantic import SecretStr

from dockgate.drivers.readers.broker_tap import PublisherSettings, TapPublisher
from dockgate.gateway.protocol import DeviceRef
from dockgate.gateway.readers import TapEvent
from dockgate.sim.device_base import Broker
from dockgate.sim.sdm import SdmTag

READ_SECONDS = 0.03  # a reader's NDEF read of an NTAG 424 DNA takes tens of milliseconds


class SimReaderController:
    """One reader at a station: ``present(tag)`` publishes the tap, returns its ``seq``."""

    def __init__(
        self,
        reader_id: str,
        broker: Broker | str,
        *,
        network: int = 1,
        max_age: float = 30.0,
    ) -> None:
        self.broker = Broker.parse(broker) if isinstance(broker, str) else broker
        self.device = DeviceRef.reader(network, reader_id)
        user, password = self.broker.credentials(self.device)
        self.publisher = TapPublisher(
            PublisherSettings(
                reader_id=reader_id,
                network=network,
                host=self.broker.host,
                port=self.broker.port,
                username=user,
                password=SecretStr(password) if password is not None else None,
                max_age=max_age,
            )
        )

    @property
    def reader_id(self) -> str:
        return self.device.device_id

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 10.0) -> None:
        """Connect the reader's publisher; TimeoutError if the broker did not accept it."""
        self.publisher.start()
        if not await asyncio.to_thread(self.publisher.wait_connected, timeout):
            raise TimeoutError(f"reader {self.reader_id}: {self.publisher.stats.last_error}")

    async def stop(self) -> None:
        await asyncio.to_thread(self.publisher.close)

    def present(self, tag: SdmTag, *, read_seconds: float = READ_SECONDS) -> int:
        """The rider holds ``tag`` to the reader: its next SUN message is read and the tap
        published (queued while the broker is away). Returns the tap's ``seq``."""
        url = tag.next_url()
        read_at = time.monotonic()
        event = TapEvent(
            self.reader_id,
            tag.uid,
            url,
            read_at - read_seconds,
            read_at,
            time.time() - read_seconds,
            read_seconds,
        )
        return self.publisher.submit(event)

    def fail(self, error: str = "removed") -> int:
        """A read that failed (the tag left the field too early): published as such."""
        now = time.monotonic()
        return self.publisher.submit(
            TapEvent(self.reader_id, None, None, now, now, time.time(), error=error)
        )

    async def settled(self, timeout: float = 5.0) -> bool:
        """Wait until the broker acknowledged every tap presented so far."""
        return await self.publisher.drain(timeout)

    def status(self) -> dict[str, Any]:
        return self.publisher.status()
