"""MQTT plumbing shared by the simulated station and scooter: one aiomqtt client per device.

Each device connects with its own credentials and a retained last-will (`online: false`),
publishes `online: true` after CONNACK, takes commands on its own `cmd` topic and answers on
the command's Response Topic with the command's Correlation Data: an ack at once and, for
commands that move something, an outcome once the physical result is known. A repeated
`cmd_id` gets the replies already sent and is never executed twice; a command past its
`expires_at` is answered `expired` and never executed. If the connection drops the device
reconnects with jittered backoff, as firmware would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypedDict

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from pydantic import BaseModel

from dockgate.drivers.mqtt.paho_compat import link_socket, new_properties
from dockgate.gateway.backoff import Backoff
from dockgate.gateway.protocol import (
    MAX_PAYLOAD,
    Ack,
    AckStatus,
    Channel,
    Command,
    DeviceRef,
    Online,
    Outcome,
    OutcomeStatus,
    ProtocolError,
    decode_command,
    encode,
    username,
)
from dockgate.sim.faults import FaultDice, FaultPlan, malformed_payload, oversized_payload
from dockgate.sim.simclock import Clock, ScaledClock

log = logging.getLogger(__name__)

FIRMWARE = "dockgate-sim/1"
_TCP_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
# As firmware would: 0.2 s after a lost link, doubling up to 10 s, each 50-150 % of that.
RECONNECT = Backoff(initial=0.2, cap=10.0, jitter=0.5)


def ms(seconds: float) -> int:
    """Epoch seconds to the protocol's integer milliseconds."""
    return int(seconds * 1000)


@dataclass(frozen=True, slots=True)
class Broker:
    """Where the devices connect, and how they prove who they are."""

    host: str = "127.0.0.1"
    port: int = 1883
    passwords: dict[str, str] | None = None  # broker username -> password, per device

    @classmethod
    def parse(cls, text: str, passwords: dict[str, str] | None = None) -> Broker:
        """``HOST:PORT`` (or ``mqtt://HOST:PORT``) to a :class:`Broker`."""
        text = text.removeprefix("mqtt://")
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"broker must be HOST:PORT, got {text!r}")
        return cls(host, int(port), passwords)

    def credentials(self, device: DeviceRef) -> tuple[str | None, str | None]:
        if self.passwords is None:
            return None, None
        user = username(device)
        return user, self.passwords.get(user)


class DeviceOptions(TypedDict, total=False):
    """How a simulated station or scooter runs; every key is optional.

    ``network``: the network id in its topics (1). ``clock``: simulated time (a real-time
    :class:`ScaledClock` of its own). ``faults``: the chaos faults (none). ``counters``: counters
    shared with other devices (its own). ``seed``: its random generator's seed (its id).
    """

    network: int
    clock: Clock | None
    faults: FaultPlan | None
    counters: Counters | None
    seed: int | None


@dataclass(slots=True)
class Counters:
    """What a device (or a whole fleet, sharing one) sent and received, by kind."""

    sent: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            "sent": dict(sorted(self.sent.items())),
            "received": dict(sorted(self.received.items())),
            "faults": dict(sorted(self.faults.items())),
        }


class CommandMemory:
    """The last ``size`` command ids and the replies sent for each (a bounded LRU).

    Pure: it only answers "seen before?" and keeps replies, so it is tested without a broker.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._replies: OrderedDict[str, list[bytes]] = OrderedDict()

    def __contains__(self, cmd_id: str) -> bool:
        return cmd_id in self._replies

    def __len__(self) -> int:
        return len(self._replies)

    def begin(self, cmd_id: str) -> bool:
        """Record a new command id; False if it was seen before (a duplicate)."""
        if cmd_id in self._replies:
            self._replies.move_to_end(cmd_id)
            return False
        self._replies[cmd_id] = []
        while len(self._replies) > self.size:
            self._replies.popitem(last=False)
        return True

    def add_reply(self, cmd_id: str, payload: bytes) -> None:
        replies = self._replies.get(cmd_id)
        if replies is not None:
            replies.append(payload)

    def replies(self, cmd_id: str) -> list[bytes]:
        return list(self._replies.get(cmd_id, ()))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What executing a command came to: accepted or not, and the physical outcome if any.

    ``outcome`` is a coroutine that performs the physical part and returns (status, reason),
    or None for commands without an outcome reply; ``None`` from the coroutine means the
    hardware never answered and no outcome is sent.
    """

    status: AckStatus = AckStatus.ACCEPTED
    reason: str | None = None
    outcome: Callable[[], Awaitable[tuple[OutcomeStatus, str | None] | None]] | None = None


class DeviceSim:
    """Base of the simulated devices: connection, last-will, commands, chaos faults.

    Subclasses implement :meth:`execute` (a decoded command to a :class:`Verdict`),
    :meth:`on_connected` (what to publish right after connecting) and :meth:`run_periodic`
    (heartbeat or telemetry loop while connected).
    """

    def __init__(
        self,
        device: DeviceRef,
        broker: Broker | str,
        *,
        clock: Clock | None = None,
        faults: FaultPlan | None = None,
        counters: Counters | None = None,
        keepalive: int = 30,
        telemetry_qos: int = 0,
    ) -> None:
        self.device = device
        self.device_id = device.device_id
        self.broker = Broker.parse(broker) if isinstance(broker, str) else broker
        self.clock: Clock = clock or ScaledClock()
        self.faults = faults or FaultPlan()
        self.dice: FaultDice = self.faults.for_device(device.device_id)
        self.counters = counters or Counters()
        self.keepalive = keepalive
        self.telemetry_qos = telemetry_qos
        self.commands = CommandMemory()
        self.spoof_ids: list[str] = []  # other devices' ids, for the spoofed-id fault
        self._client: aiomqtt.Client | None = None
        self._runner: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._offline_until = 0.0  # simulated time before which the device stays away
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reply_lock = asyncio.Lock()
        self._wake = asyncio.Event()  # set to end a periodic sleep early (a state change)

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 10.0) -> None:
        """Connect (and keep reconnecting in the background); wait for the first CONNACK."""
        if self._runner is None:
            self._stopping.clear()
            self._runner = asyncio.create_task(self._run(), name=f"sim-{self.device_id}")
        if timeout > 0:
            await asyncio.wait_for(self._connected.wait(), timeout)

    async def stop(self) -> None:
        """Disconnect cleanly (the broker drops the will: `online: false` is published here)."""
        self._stopping.set()
        client = self._client
        if client is not None and self._connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
                await asyncio.wait_for(self._publish_online(client, False), 2.0)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._runner
            self._runner = None
        for task in list(self._tasks):
            task.cancel()
        self._connected.clear()

    @property
    def online(self) -> bool:
        return self._connected.is_set()

    async def wait_online(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _sleep_or_wake(self, sim_seconds: float) -> None:
        """Sleep ``sim_seconds`` of simulated time, or less if ``_wake`` is set meanwhile."""
        if self._wake.is_set():
            self._wake.clear()
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(sim_seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            for task in (sleeper, waker):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # The suppress above also swallows a cancellation aimed at us while we wait for
            # the helpers; without this the device's loop never stops (a fleet that hangs).
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise asyncio.CancelledError
        self._wake.clear()

    def drop(self, offline_for: float = 0.0) -> None:
        """Lose the connection abruptly (no DISCONNECT, so the broker fires the last-will).

        The device stays away ``offline_for`` simulated seconds, then reconnects.
        """
        self._offline_until = self.clock.now() + offline_for
        client = self._client
        sock = link_socket(client) if client is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.counters.faults["disconnect"] += 1

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _will(self) -> aiomqtt.Will:
        payload = encode(Online(ts=ms(self.clock.stamp()), device_id=self.device_id, online=False))
        return aiomqtt.Will(self.device.topic(Channel.ONLINE), payload, qos=1, retain=True)

    async def _run(self) -> None:
        """Connect, serve, and reconnect after a lost link until stopped."""
        reconnects = RECONNECT.series()
        while not self._stopping.is_set():
            wait = self._offline_until - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)
            client = self._new_client()
            try:
                async with client:
                    self._client = client
                    reconnects.reset()
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                log.debug("%s: connection lost: %s", self.device_id, exc)
            finally:
                self._connected.clear()
                self._client = None
            if self._stopping.is_set():
                return
            await asyncio.sleep(reconnects.next_delay())

    def _new_client(self) -> aiomqtt.Client:
        user, password = self.broker.credentials(self.device)
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            identifier=f"{self.device.kind.value}-{self.device.network}-{self.device_id}",
            username=user,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=self._will(),
            keepalive=self.keepalive,
            socket_options=[_TCP_NODELAY],
            clean_start=True,
            timeout=10,
        )

    async def _serve(self, client: aiomqtt.Client) -> None:
        """One connection: announce the device, then take commands until the link drops."""
        await client.subscribe(self.device.topic(Channel.CMD), qos=1)
        await self._publish_online(client, True)
        await self.on_connected()
        self._connected.set()
        self.counters.sent["connect"] += 1
        periodic = asyncio.create_task(self._periodic_guarded())
        try:
            async for message in client.messages:
                await self._on_message(message)
        finally:
            periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await periodic

    async def _periodic_guarded(self) -> None:
        try:
            await self.run_periodic()
        except aiomqtt.MqttError:
            pass  # the message loop sees the disconnect too and reconnects
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in a simulator must not kill the whole fleet
            log.exception("%s: periodic task failed", self.device_id)

    # --- publishing ----------------------------------------------------------------------

    async def _publish_online(self, client: aiomqtt.Client, online: bool) -> None:
        payload = Online(
            ts=ms(self.clock.stamp()), device_id=self.device_id, online=online, firmware=FIRMWARE
        )
        await client.publish(self.device.topic(Channel.ONLINE), encode(payload), 1, True)
        self.counters.sent["online"] += 1

    async def publish(
        self, channel: Channel, model: BaseModel, *, qos: int = 1, retain: bool = False
    ) -> bool:
        """Publish one payload on this device's ``channel``; False if offline (it is lost)."""
        client = self._client  # set from CONNACK until the link drops
        if client is None:
            self.counters.sent["lost-offline"] += 1
            return False
        try:
            await client.publish(self.device.topic(channel), encode(model), qos, retain)
        except aiomqtt.MqttError:
            self.counters.sent["lost-offline"] += 1
            return False
        self.counters.sent[channel.value] += 1
        return True

    async def publish_raw(self, channel: Channel, payload: bytes, qos: int = 1) -> None:
        """Publish bytes as they are (for malformed and oversized faults)."""
        client = self._client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.device.topic(channel), payload, qos)

    # --- commands ------------------------------------------------------------------------

    async def _on_message(self, message: aiomqtt.Message) -> None:
        raw = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        self.counters.received["cmd"] += 1
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) or self.device.topic(Channel.REPLY)
        if response_topic != self.device.topic(Channel.REPLY):
            # Our ACL lets us write only our own reply topic; answer there.
            response_topic = self.device.topic(Channel.REPLY)
        correlation = getattr(props, "CorrelationData", None)
        received_at = self.clock.stamp()
        try:
            cmd = decode_command(str(message.topic), bytes(raw), device=self.device)
        except ProtocolError as exc:
            self.counters.received[f"cmd-refused-{exc.code}"] += 1
            cmd_id = _loose_cmd_id(raw)
            if cmd_id is not None:
                await self._reply(
                    response_topic,
                    correlation,
                    Ack(
                        ts=ms(received_at),
                        device_id=self.device_id,
                        cmd_id=cmd_id,
                        status=AckStatus.REJECTED,
                        reason=exc.code,
                    ),
                    cmd_id,
                    remember=False,
                )
            return
        if not self.commands.begin(cmd.cmd_id):
            self.counters.received["cmd-duplicate"] += 1
            for payload in self.commands.replies(cmd.cmd_id):
                await self._send(response_topic, correlation, payload)
            return
        self._spawn(self._handle(cmd, response_topic, correlation))

    async def _handle(self, cmd: Command, response_topic: str, correlation: bytes | None) -> None:
        delay = self.dice.ack_delay()
        if delay:
            self.counters.faults["slow-ack"] += 1
            await asyncio.sleep(delay)
        if ms(self.clock.stamp()) > cmd.expires_at:
            self.counters.received["cmd-expired"] += 1
            await self._reply(
                response_topic,
                correlation,
                Ack(
                    ts=ms(self.clock.stamp()),
                    device_id=self.device_id,
                    cmd_id=cmd.cmd_id,
                    status=AckStatus.EXPIRED,
                ),
                cmd.cmd_id,
            )
            return
        try:
            verdict = self.execute(cmd)
        except Exception as exc:  # a simulator bug becomes a rejected command, not a crash
            log.exception("%s: executing %s failed", self.device_id, cmd.cmd)
            verdict = Verdict(AckStatus.REJECTED, f"internal: {type(exc).__name__}")
        self.counters.received[f"cmd-{cmd.cmd}"] += 1
        ack = Ack(
            ts=ms(self.clock.stamp()),
            device_id=self.device_id,
            cmd_id=cmd.cmd_id,
            status=verdict.status,
            reason=verdict.reason,
        )
        if self.dice.lose_ack():
            # Lost in transit: remembered (a retry gets it) but never sent now.
            self.counters.faults["lost-ack"] += 1
            self.commands.add_reply(cmd.cmd_id, encode(ack))
        else:
            await self._reply(response_topic, correlation, ack, cmd.cmd_id)
        if verdict.outcome is None or verdict.status is not AckStatus.ACCEPTED:
            return
        result = await verdict.outcome()
        if result is None:
            return
        status, reason = result
        outcome = Outcome(
            ts=ms(self.clock.stamp()),
            device_id=self.device_id,
            cmd_id=cmd.cmd_id,
            status=status,
            reason=reason,
        )
        await self._reply(response_topic, correlation, outcome, cmd.cmd_id)

    async def _reply(
        self,
        topic: str,
        correlation: bytes | None,
        model: Ack | Outcome,
        cmd_id: str,
        *,
        remember: bool = True,
    ) -> None:
        payload = encode(model)
        if remember:
            self.commands.add_reply(cmd_id, payload)
        await self._send(topic, correlation, payload)
        self.counters.sent[model.phase] += 1

    async def _send(self, topic: str, correlation: bytes | None, payload: bytes) -> None:
        client = self._client
        if client is None:
            return
        props = None
        if correlation is not None:
            props = new_properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(topic, payload, 1, False, props)

    # --- chaos ---------------------------------------------------------------------------

    async def run_chaos(self) -> None:
        """Inject this device's chaos faults (disconnects, bad payloads) until cancelled."""
        while True:
            nxt = self.dice.next_chaos()
            if nxt is None:
                return
            wait, kind = nxt
            await self.clock.sleep(wait)
            if not self.online:
                continue
            good = self.sample_payload()
            channel = self.sample_channel()
            if kind == "disconnect":
                self.drop(self.dice.offline_for())
            elif kind == "malformed":
                self.counters.faults["malformed"] += 1
                await self.publish_raw(channel, malformed_payload(self.dice.rng, good))
            elif kind == "oversized":
                self.counters.faults["oversized"] += 1
                await self.publish_raw(channel, oversized_payload(good, MAX_PAYLOAD + 1024))
            elif kind == "spoofed":
                victim = self.spoof_victim()
                if victim:
                    self.counters.faults["spoofed"] += 1
                    await self.publish_raw(
                        channel,
                        good.replace(
                            f'"device_id":"{self.device_id}"'.encode(),
                            f'"device_id":"{victim}"'.encode(),
                        ),
                    )

    def spoof_victim(self) -> str | None:
        """Another device's id to claim in a spoofed payload (the fleet sets real ones)."""
        return self.dice.rng.choice(self.spoof_ids) if self.spoof_ids else "SPOOF0"

    # --- for subclasses ------------------------------------------------------------------

    def execute(self, cmd: Command) -> Verdict:
        raise NotImplementedError

    async def on_connected(self) -> None:
        """Publish the device's state right after (re)connecting."""

    async def run_periodic(self) -> None:
        """Heartbeat or telemetry while connected (cancelled on disconnect)."""

    def sample_payload(self) -> bytes:
        """A valid payload of this device (the base of malformed and spoofed variants)."""
        raise NotImplementedError

    def sample_channel(self) -> Channel:
        raise NotImplementedError


def _loose_cmd_id(raw: bytes | bytearray) -> str | None:
    """The cmd_id of a refused command if it has a usable one, to say "rejected" to it."""
    try:
        obj = orjson.loads(raw) if len(raw) <= MAX_PAYLOAD else None
    except orjson.JSONDecodeError:
        return None
    cmd_id = obj.get("cmd_id") if isinstance(obj, dict) else None
    if (
        isinstance(cmd_id, str)
        and 0 < len(cmd_id) <= 64
        and all(c.isascii() and (c.isalnum() or c in "_-") for c in cmd_id)
    ):
        return cmd_id
    return None
