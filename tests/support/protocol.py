"""Every device payload the wire format knows, as models, for round-trip and ingest tests."""

from __future__ import annotations

from dockgate.gateway.protocol import (
    Ack,
    AlarmEvent,
    Channel,
    Online,
    Outcome,
    PowerEvent,
    SpotDocked,
    SpotFaulted,
    SpotIdentifyFail,
    SpotStatus,
    SpotTemperature,
    SpotUndocked,
    SpotUnexpectedUnlock,
    StationStatus,
    Telemetry,
    VehicleEvent,
    VehicleEventType,
    now_ms,
)

__all__ = ["station_payloads", "telemetry", "vehicle_payloads"]


def telemetry(**over: object) -> Telemetry:
    """A plausible riding scooter's telemetry model; ``over`` replaces single fields."""
    fields = {
        "ts": now_ms(),
        "device_id": "SXB123",
        "lat": 48.85,
        "lng": 2.35,
        "gps_accuracy": 4.0,
        "speed": 18.5,
        "battery": 77,
        "lock": "unlocked",
        "speed_mode": 2,
        "max_speed": 25,
        "odometer": 10_250,
    }
    fields.update(over)
    return Telemetry(**fields)


def station_payloads() -> list[tuple[Channel, object]]:
    """One of each message a station (device ``ST-01``) publishes, with its channel."""
    base = {"ts": now_ms(), "device_id": "ST-01"}
    return [
        (Channel.ONLINE, Online(online=True, firmware="1.2", **base)),
        (Channel.ONLINE, Online(online=False, **base)),
        (
            Channel.STATUS,
            StationStatus(
                spots=[
                    SpotStatus(spot=1, state="occupied", locked=True, vehicle_id="SXB123"),
                    SpotStatus(spot=2, state="free", locked=False),
                ],
                mains=False,
                battery=60,
                **base,
            ),
        ),
        (Channel.SPOT, SpotDocked(type="spot-docked", spot=1, vehicle_id="SXB123", **base)),
        (Channel.SPOT, SpotUndocked(type="spot-undocked", spot=1, vehicle_id="SXB123", **base)),
        (Channel.SPOT, SpotIdentifyFail(type="spot-identify-fail", spot=3, **base)),
        (
            Channel.SPOT,
            SpotTemperature(type="spot-temperature", spot=3, celsius=71.5, high=True, **base),
        ),
        (Channel.SPOT, SpotFaulted(type="spot-fault", spot=2, fault="lock-jammed", **base)),
        (Channel.SPOT, SpotUnexpectedUnlock(type="unexpected-unlock", spot=4, **base)),
        (Channel.POWER, PowerEvent(type="station-power-cut", battery=90, **base)),
        (Channel.POWER, PowerEvent(type="station-power-restored", **base)),
        (Channel.ALARM, AlarmEvent(type="station-alarm-triggered", reason="door", **base)),
        (Channel.ALARM, AlarmEvent(type="station-alarm-cleared", **base)),
    ]


def vehicle_payloads() -> list[tuple[Channel, object]]:
    """One of each message a vehicle (device ``SXB123``) publishes, with its channel."""
    base = {"ts": now_ms(), "device_id": "SXB123"}
    out: list[tuple[Channel, object]] = [
        (Channel.ONLINE, Online(online=True, **base)),
        (Channel.TELEMETRY, telemetry()),
        (Channel.TELEMETRY, telemetry(lock="on-hold", speed_mode=3, light=True)),
    ]
    out += [
        (Channel.EVENT, VehicleEvent(type=t, lat=1.0, lng=2.0, battery=9, **base))
        for t in VehicleEventType
    ]
    out.append((Channel.REPLY, Ack(cmd_id="c1", status="accepted", **base)))
    out.append((Channel.REPLY, Outcome(cmd_id="c1", status="failed", reason="x", **base)))
    return out
