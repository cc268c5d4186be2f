"""The station and scooter simulators against a real Mosquitto, seen from a gateway's seat.

The "gateway" here is a plain aiomqtt client that publishes commands exactly as the protocol
says (response topic, correlation data, message expiry) and checks every reply with the
gateway's own decoder, so a simulator that drifted from the protocol fails these tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dockgate.gateway.protocol import (
    Channel,
    DeviceMessage,
    DeviceRef,
    LockSpot,
    LockState,
    LockVehicle,
    PlaySound,
    ProtocolError,
    SetLight,
    SetMaxSpeed,
    SetSpeedMode,
    SpeedMode,
    UnlockSpot,
    UnlockVehicle,
    decode,
    encode,
    now_ms,
)
from dockgate.sim.device_base import Broker
from dockgate.sim.faults import FaultPlan
from dockgate.sim.fleet import DayPlan, FleetSim
from dockgate.sim.routes import CENTRE, Route, offset
from dockgate.sim.scooter import ScooterSim
from dockgate.sim.simclock import ScaledClock
from dockgate.sim.station import StationConfig, StationSim

pytestmark = pytest.mark.timeout(60)


@dataclass
class Seen:
    topic: str
    raw: bytes
    correlation: bytes | None
    msg: DeviceMessage | None
    error: str | None


class GatewaySeat:
    """Subscribes to the whole tree, decodes everything with the gateway's gate, sends commands."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.seen: list[Seen] = []
        self._new = asyncio.Condition()
        self._n = 0

    async def run(self) -> None:
        async for m in self.client.messages:
            raw = bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else b""
            if str(m.topic).endswith("/cmd"):
                continue  # our own commands: the gateway does not subscribe to them
            try:
                msg, err = decode(str(m.topic), raw, retained=m.retain), None
            except ProtocolError as exc:
                msg, err = None, exc.code
            corr = getattr(m.properties, "CorrelationData", None)
            async with self._new:
                self.seen.append(Seen(str(m.topic), raw, corr, msg, err))
                self._new.notify_all()

    async def wait(self, pred: Callable[[Seen], bool], timeout: float = 5.0, count: int = 1):
        async def _until() -> list[Seen]:
            async with self._new:
                while True:
                    hits = [s for s in self.seen if pred(s)]
                    if len(hits) >= count:
                        return hits
                    await self._new.wait()

        return await asyncio.wait_for(_until(), timeout)

    def replies(self, cmd_id: str) -> list[Any]:
        return [
            s.msg.payload
            for s in self.seen
            if s.msg and s.msg.channel is Channel.REPLY and s.msg.payload.cmd_id == cmd_id
        ]

    async def send(self, device: DeviceRef, cmd: Any, expiry_s: int = 30) -> None:
        await self.send_raw(device, encode(cmd), cmd.cmd_id, expiry_s)

    async def send_raw(
        self, device: DeviceRef, payload: bytes, cmd_id: str, expiry_s: int = 30
    ) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = device.topic(Channel.REPLY)
        props.CorrelationData = cmd_id.encode()
        props.MessageExpiryInterval = expiry_s
        await self.client.publish(device.topic(Channel.CMD), payload, 1, False, props)

    async def reply(self, cmd_id: str, phase: str, timeout: float = 5.0) -> Any:
        hits = await self.wait(
            lambda s: (
                s.msg is not None
                and s.msg.channel is Channel.REPLY
                and s.msg.payload.cmd_id == cmd_id
                and s.msg.payload.phase == phase
            ),
            timeout,
        )
        assert hits[0].correlation == cmd_id.encode()
        return hits[0].msg.payload


def cmd_times(ttl_s: float = 30.0) -> dict[str, int]:
    now = now_ms()
    return {"ts": now, "expires_at": now + int(ttl_s * 1000)}


@contextlib.asynccontextmanager
async def gateway_seat(port: int, **auth: Any) -> AsyncIterator[GatewaySeat]:
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        protocol=aiomqtt.ProtocolVersion.V5,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        **auth,
    ) as client:
        await client.subscribe("dockgate/#", qos=1)
        seat = GatewaySeat(client)
        task = asyncio.create_task(seat.run())
        try:
            yield seat
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


def broker_of(mosquitto: Any) -> Broker:
    return Broker(mosquitto.host, mosquitto.port)


def fast_clock() -> ScaledClock:
    return ScaledClock(scale=20.0)


# --- station ---------------------------------------------------------------------------------


async def test_station_unlock_acks_then_opens_then_vehicle_undocks(mosquitto) -> None:
    async with (
        gateway_seat(mosquitto.port) as gw,
        StationSim("ST01", broker_of(mosquitto), spots=4, clock=fast_clock()) as st,
    ):
        st.dock(2, "SXB001")
        await gw.wait(lambda s: s.msg is not None and getattr(s.msg.payload, "type", "")
                      == "spot-docked")  # fmt: skip
        cmd = UnlockSpot(cmd_id="u1", spot=2, **cmd_times())
        await gw.send(st.device, cmd)
        ack = await gw.reply("u1", "ack")
        outcome = await gw.reply("u1", "outcome")
        assert (ack.status.value, outcome.status.value) == ("accepted", "done")
        undocked = await gw.wait(
            lambda s: s.msg is not None and getattr(s.msg.payload, "type", "") == "spot-undocked"
        )
        ev = undocked[0].msg.payload
        assert (ev.spot, ev.vehicle_id) == (2, "SXB001")
        # order on the wire: ack, outcome, then the physical undock
        order = [s for s in gw.seen if s.msg and (s.msg.channel is Channel.REPLY
                 or getattr(s.msg.payload, "type", "") == "spot-undocked")]  # fmt: skip
        assert [getattr(s.msg.payload, "phase", "undock") for s in order] == [
            "ack", "outcome", "undock"
        ]  # fmt: skip
        assert st.core.spot(2).vehicle_id is None
        assert all(s.error is None for s in gw.seen)


async def test_station_jam_no_answer_and_refusals(mosquitto) -> None:
    async with (
        gateway_seat(mosquitto.port) as gw,
        StationSim("ST02", broker_of(mosquitto), spots=3, clock=fast_clock()) as st,
    ):
        st.dock(1, "SXB001")
        st.set_lock_mode(1, "jam")
        st.set_lock_mode(3, "no-answer")
        await gw.send(st.device, UnlockSpot(cmd_id="j1", spot=1, **cmd_times()))
        await gw.send(st.device, LockSpot(cmd_id="n1", spot=3, **cmd_times()))
        await gw.send(st.device, UnlockSpot(cmd_id="x1", spot=9, **cmd_times()))
        assert (await gw.reply("j1", "ack")).status.value == "accepted"
        jam = await gw.reply("j1", "outcome")
        assert (jam.status.value, jam.reason) == ("failed", "lock-jammed")
        silent = await gw.reply("n1", "outcome")
        assert (silent.status.value, silent.reason) == ("failed", "lock-no-answer")
        bad = await gw.reply("x1", "ack")
        assert (bad.status.value, bad.reason) == ("rejected", "no-such-spot")
        await asyncio.sleep(0.3)
        assert gw.replies("x1") == [bad]  # a refused command has no outcome
        faults = [s.msg.payload.fault.value for s in gw.seen
                  if s.msg and getattr(s.msg.payload, "type", "") == "spot-fault"]  # fmt: skip
        assert faults == ["lock-jammed", "lock-no-answer"]
        # the jammed spot is out of service until repaired
        await gw.send(st.device, UnlockSpot(cmd_id="j2", spot=1, **cmd_times()))
        assert (await gw.reply("j2", "ack")).reason == "spot-out-of-service"


async def test_station_power_alarm_temperature_and_retained_status(mosquitto) -> None:
    async with (
        gateway_seat(mosquitto.port) as gw,
        StationSim(
            "ST03",
            broker_of(mosquitto),
            spots=2,
            clock=fast_clock(),
            config=StationConfig(temperature_interval_s=1e6),
        ) as st,  # fmt: skip
    ):
        st.cut_power()
        cut = await gw.wait(lambda s: s.msg is not None and s.msg.channel is Channel.STATUS
                            and not s.msg.payload.mains)  # fmt: skip
        assert cut[0].msg.payload.battery == 100 and cut[0].msg.retained is False
        st.trigger_alarm("tamper")
        st.heat(1, 72.5)
        st.restore_power()
        want = ["station-power-cut", "station-alarm-triggered", "spot-temperature",
                "station-power-restored"]  # fmt: skip
        hits = await gw.wait(lambda s: getattr(getattr(s.msg, "payload", None), "type", "")
                             in want, count=4)  # fmt: skip
        assert [h.msg.payload.type for h in hits] == want
        assert hits[2].msg.payload.high
        await gw.wait(lambda s: s.msg is not None and s.msg.channel is Channel.STATUS
                      and s.msg.payload.mains, count=2)  # connect, then restored  # fmt: skip
    # a late subscriber sees the retained status and the clean "offline"
    async with gateway_seat(mosquitto.port) as late:
        await late.wait(lambda s: s.msg is not None and s.msg.channel is Channel.STATUS)
        online = await late.wait(lambda s: s.msg is not None and s.msg.channel is Channel.ONLINE)
        assert online[0].msg.payload.online is False and online[0].msg.retained


# --- scooter ---------------------------------------------------------------------------------


def telemetry_of(gw: GatewaySeat, vid: str) -> list[Any]:
    return [s.msg.payload for s in gw.seen if s.msg and s.msg.channel is Channel.TELEMETRY
            and s.msg.device.device_id == vid]  # fmt: skip


async def test_scooter_obeys_lock_unlock_max_speed_mode_sound_light(mosquitto) -> None:
    async with (
        gateway_seat(mosquitto.port) as gw,
        ScooterSim("SXB010", broker_of(mosquitto), clock=fast_clock()) as sc,
    ):
        dev = sc.device
        sc.ride(Route("east", [CENTRE, offset(*CENTRE, 3000, 0)]))
        await gw.send(dev, UnlockVehicle(cmd_id="c1", light=True, **cmd_times()))
        assert (await gw.reply("c1", "ack")).status.value == "accepted"
        assert (await gw.reply("c1", "outcome")).status.value == "done"
        await gw.send(dev, SetSpeedMode(cmd_id="c2", speed_mode=SpeedMode.ECO, **cmd_times()))
        await gw.send(dev, SetMaxSpeed(cmd_id="c3", max_speed=8, **cmd_times()))
        await gw.send(dev, PlaySound(cmd_id="c4", sound="geofencing", **cmd_times()))
        await gw.send(dev, SetLight(cmd_id="c5", on=False, **cmd_times()))
        for cid in ("c2", "c3", "c4", "c5"):
            assert (await gw.reply(cid, "ack")).status.value == "accepted"
        await gw.wait(
            lambda s: s.msg is not None and s.msg.channel is Channel.TELEMETRY
            and s.msg.payload.max_speed == 8 and s.msg.payload.speed > 0
            and not s.msg.payload.light
        )  # fmt: skip
        t = telemetry_of(gw, "SXB010")[-1]
        assert (t.lock, t.speed_mode, t.max_speed, t.speed, t.light) == (
            LockState.UNLOCKED, SpeedMode.ECO, 8, 8.0, False
        )  # fmt: skip
        assert sc.core.sounds == ["geofencing"]
        await gw.send(dev, LockVehicle(cmd_id="c6", trip_on_hold=True, **cmd_times()))
        assert (await gw.reply("c6", "outcome")).status.value == "done"
        await gw.wait(lambda s: s.msg is not None and s.msg.channel is Channel.TELEMETRY
                      and s.msg.payload.lock is LockState.ON_HOLD)  # fmt: skip
        assert sc.core.speed == 0
        assert gw.replies("c4")[-1].phase == "ack" and len(gw.replies("c4")) == 1  # no outcome


async def test_scooter_telemetry_rate_riding_vs_parked(mosquitto) -> None:
    clock = ScaledClock(scale=100.0)  # 10 s riding = 0.1 s wall, 240 s parked = 2.4 s
    async with (
        gateway_seat(mosquitto.port) as gw,
        ScooterSim("SXB011", broker_of(mosquitto), clock=clock) as sc,
    ):
        await asyncio.sleep(1.0)
        parked = len(telemetry_of(gw, "SXB011"))
        sc.ride(Route("east", [CENTRE, offset(*CENTRE, 30000, 0)]), unlock=True)
        await asyncio.sleep(1.0)
        riding = len(telemetry_of(gw, "SXB011")) - parked
        assert parked <= 2  # the connect report only
        assert 6 <= riding <= 13
        odo = [t.odometer for t in telemetry_of(gw, "SXB011")]
        assert odo == sorted(odo) and odo[-1] > 0


async def test_scooter_events_on_the_wire(mosquitto) -> None:
    async with (
        gateway_seat(mosquitto.port) as gw,
        ScooterSim("SXB012", broker_of(mosquitto), clock=fast_clock()) as sc,
    ):
        sc.push(20)
        sc.lift()
        sc.fall()
        sc.dismantle()
        hits = await gw.wait(lambda s: s.msg is not None and s.msg.channel is Channel.EVENT,
                             count=4)  # fmt: skip
        assert [h.msg.payload.type.value for h in hits] == [
            "vehicle-illegal-moving", "vehicle-lifted", "vehicle-fallen", "vehicle-dismantling"
        ]  # fmt: skip


async def test_duplicate_command_id_is_answered_again_but_executed_once(mosquitto) -> None:
    async with (
        gateway_seat(mosquitto.port) as gw,
        ScooterSim("SXB013", broker_of(mosquitto), clock=fast_clock()) as sc,
    ):
        cmd = PlaySound(cmd_id="dup1", sound="locate", **cmd_times())
        await gw.send(sc.device, cmd)
        first = await gw.reply("dup1", "ack")
        await gw.send(sc.device, cmd)
        await gw.wait(lambda s: s.msg is not None and s.msg.channel is Channel.REPLY, count=2)
        again = gw.replies("dup1")
        assert again == [first, first]
        assert sc.core.sounds == ["locate"]
        assert sc.counters.received["cmd-duplicate"] == 1
        # physical command: the duplicate gets ack and outcome again, the motor moves once
        lock = UnlockVehicle(cmd_id="dup2", **cmd_times())
        await gw.send(sc.device, lock)
        await gw.reply("dup2", "outcome")
        await gw.send(sc.device, lock)
        await gw.wait(lambda s: s.msg is not None and s.msg.channel is Channel.REPLY
                      and s.msg.payload.cmd_id == "dup2", count=4)  # fmt: skip
        assert [r.phase for r in gw.replies("dup2")] == ["ack", "outcome", "ack", "outcome"]
        assert sc.counters.received["cmd-unlock-vehicle"] == 1


async def test_expired_command_is_answered_expired_and_never_executed(mosquitto) -> None:
    async with (
        gateway_seat(mosquitto.port) as gw,
        ScooterSim("SXB014", broker_of(mosquitto), clock=fast_clock()) as sc,
    ):
        now = now_ms()
        stale = UnlockVehicle(cmd_id="old1", ts=now - 60_000, expires_at=now - 1000)
        await gw.send(sc.device, stale)
        ack = await gw.reply("old1", "ack")
        assert ack.status.value == "expired"
        await asyncio.sleep(0.3)
        assert sc.core.lock is LockState.LOCKED
        assert [r.phase for r in gw.replies("old1")] == ["ack"]


async def test_slow_ack_that_expires_while_delayed_is_not_executed(mosquitto) -> None:
    faults = FaultPlan(slow_ack=1.0, slow_ack_s=0.5)
    async with (
        gateway_seat(mosquitto.port) as gw,
        ScooterSim("SXB015", broker_of(mosquitto), clock=fast_clock(), faults=faults) as sc,
    ):
        t0 = time.monotonic()
        await gw.send(sc.device, UnlockVehicle(cmd_id="s1", **cmd_times(ttl_s=0.2)))
        ack = await gw.reply("s1", "ack")
        assert time.monotonic() - t0 >= 0.5
        assert ack.status.value == "expired" and sc.core.lock is LockState.LOCKED
        await gw.send(sc.device, UnlockVehicle(cmd_id="s2", **cmd_times()))
        assert (await gw.reply("s2", "ack")).status.value == "accepted"
        assert sc.counters.faults["slow-ack"] == 2


async def test_lost_ack_is_recovered_by_a_retry_with_the_same_id(mosquitto) -> None:
    async with (
        gateway_seat(mosquitto.port) as gw,
        ScooterSim(
            "SXB016", broker_of(mosquitto), clock=fast_clock(), faults=FaultPlan(lost_ack=1.0)
        ) as sc,  # fmt: skip
    ):
        cmd = SetMaxSpeed(cmd_id="l1", max_speed=10, **cmd_times())
        await gw.send(sc.device, cmd)
        with pytest.raises(TimeoutError):
            await gw.reply("l1", "ack", timeout=0.5)
        assert sc.core.max_speed_cap == 10  # it acted; only the ack was lost
        await gw.send(sc.device, cmd)  # the gateway's retry
        assert (await gw.reply("l1", "ack")).status.value == "accepted"
        assert sc.counters.faults["lost-ack"] == 1
        assert sc.counters.received["cmd-set-max-speed"] == 1


async def test_malformed_command_is_rejected_not_crashed(mosquitto) -> None:
    async with (
        gateway_seat(mosquitto.port) as gw,
        ScooterSim("SXB017", broker_of(mosquitto), clock=fast_clock()) as sc,
    ):
        dev = sc.device
        await gw.send_raw(dev, b'{"cmd_id":"m1","cmd":"self-destruct"}', "m1")
        await gw.send_raw(dev, b"\x00garbage", "m0")
        await gw.send(dev, UnlockSpot(cmd_id="m2", spot=1, **cmd_times()))
        assert (await gw.reply("m1", "ack")).status.value == "rejected"
        assert (await gw.reply("m2", "ack")).reason == "schema"  # a station command
        await gw.send(sc.device, PlaySound(cmd_id="m3", **cmd_times()))
        assert (await gw.reply("m3", "ack")).status.value == "accepted"
        assert sc.counters.received["cmd-refused-bad-json"] == 1


async def test_last_will_on_abrupt_disconnect_then_back_online(mosquitto) -> None:
    async with (
        gateway_seat(mosquitto.port) as gw,
        ScooterSim("SXB018", broker_of(mosquitto), clock=fast_clock()) as sc,
    ):

        def online_states() -> list[bool]:
            return [s.msg.payload.online for s in gw.seen
                    if s.msg and s.msg.channel is Channel.ONLINE]  # fmt: skip

        await gw.wait(lambda s: s.msg is not None and s.msg.channel is Channel.ONLINE)
        sc.drop(offline_for=20)  # 1 s of wall time at x20
        await gw.wait(lambda s: s.msg is not None and s.msg.channel is Channel.ONLINE, count=2)
        assert online_states()[:2] == [True, False]
        assert not sc.online
        await gw.wait(lambda s: s.msg is not None and s.msg.channel is Channel.ONLINE,
                      count=3, timeout=10)  # fmt: skip
        assert online_states()[:3] == [True, False, True]
        await sc.wait_online(5)


async def test_chaos_faults_produce_what_they_claim(mosquitto) -> None:
    faults = FaultPlan(malformed=3600, oversized=3600, spoofed=3600, seed=3)  # ~3/s at x1
    async with (
        gateway_seat(mosquitto.port) as gw,
        ScooterSim(
            "SXB019", broker_of(mosquitto), faults=faults, clock=ScaledClock(scale=10.0)
        ) as sc,  # fmt: skip
    ):
        sc.spoof_ids = ["SXB999"]
        chaos = asyncio.create_task(sc.run_chaos())
        await asyncio.sleep(2.0)
        chaos.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chaos
    errors = [s.error for s in gw.seen if s.error]
    f = sc.counters.faults
    assert f["malformed"] > 3 and f["oversized"] > 3 and f["spoofed"] > 3
    assert errors.count("oversized") == f["oversized"]
    assert errors.count("device-mismatch") == f["spoofed"]
    assert (
        sum(errors.count(c) for c in ("bad-json", "schema", "future-timestamp")) == f["malformed"]
    )


async def test_devices_log_in_with_their_own_credentials(mosquitto_auth) -> None:
    broker = Broker(mosquitto_auth.host, mosquitto_auth.port, mosquitto_auth.users)
    auth = {"username": "gateway", "password": mosquitto_auth.users["gateway"]}
    async with (
        gateway_seat(mosquitto_auth.port, **auth) as gw,
        ScooterSim("SXB001", broker, clock=fast_clock()) as sc,
        StationSim("ST01", broker, spots=2, clock=fast_clock()) as st,
    ):
        st.dock(1, "SXB001")
        await gw.send(sc.device, PlaySound(cmd_id="a1", **cmd_times()))
        await gw.send(st.device, UnlockSpot(cmd_id="a2", spot=1, **cmd_times()))
        assert (await gw.reply("a1", "ack")).status.value == "accepted"
        assert (await gw.reply("a2", "outcome")).status.value == "done"
    wrong = Broker(mosquitto_auth.host, mosquitto_auth.port, {})
    intruder = ScooterSim("SXB002", wrong, clock=fast_clock())
    with pytest.raises(TimeoutError):
        await intruder.start(timeout=1.0)
    await intruder.stop()


# --- fleet -----------------------------------------------------------------------------------


async def test_fleet_plays_a_day_and_everything_it_sends_decodes(mosquitto) -> None:
    day = DayPlan(mean_idle_s=120.0, power_cuts_per_station_hour=2.0, power_cut_s=60.0)
    async with gateway_seat(mosquitto.port) as gw:
        fleet = FleetSim(broker_of(mosquitto), stations=2, vehicles=8, spots=4,
                         time_scale=300.0, day=day, seed=5)  # fmt: skip
        async with fleet:
            assert fleet.summary()["online"] == 10
            await fleet.run(duration=3.0)
        await asyncio.sleep(0.3)
    summary = fleet.summary()  # final counts, after every device has stopped
    assert [s.topic for s in gw.seen if s.error] == []
    by_channel: dict[str, int] = {}
    for s in gw.seen:
        if s.msg is not None and not s.msg.retained:
            by_channel[s.msg.channel.value] = by_channel.get(s.msg.channel.value, 0) + 1
    sent = summary["sent"]
    assert sent["telemetry"] > 20 and by_channel["telemetry"] == sent["telemetry"]
    assert by_channel["spot"] == sent["spot"] > 0  # trips took scooters out of stations
    types = {getattr(s.msg.payload, "type", None) for s in gw.seen if s.msg}
    assert {"spot-undocked", "station-power-cut"} <= types
    odometers = [v.core.odometer_m for v in fleet.vehicles.values()]
    assert sum(o > 0 for o in odometers) >= 4


async def test_fleet_scripting_and_spoofed_ids_name_real_devices(mosquitto) -> None:
    faults = FaultPlan(spoofed=3600 * 20, seed=2)
    async with gateway_seat(mosquitto.port) as gw:
        async with FleetSim(broker_of(mosquitto), stations=1, vehicles=3, spots=3,
                            faults=faults) as fleet:  # fmt: skip
            vid = "SXB00003"
            spot = fleet.dock(vid, "ST001") if fleet.where_docked(vid) is None else None
            assert fleet.where_docked(vid) is not None
            route = fleet.routes[0]
            fleet.ride(vid, route)
            assert fleet.where_docked(vid) is None and fleet.vehicles[vid].core.riding
            await fleet.run(duration=1.0, autopilot=False)
        await asyncio.sleep(0.2)
    spoofed = [s for s in gw.seen if s.error == "device-mismatch"]
    assert spoofed and len(spoofed) == fleet.counters.faults["spoofed"]
    real = set(fleet.vehicles) | set(fleet.stations)
    for s in spoofed:
        claimed = orjson.loads(s.raw)["device_id"]
        assert claimed in real and claimed not in s.topic
    del spot
