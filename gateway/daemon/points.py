"""Device messages as time-series points for the telemetry sink.

Only measurements a dashboard plots: a vehicle's position, speed, battery and lock; a station's
free spots and mains power. Tags are the network and the device's own id, so series stay few.
"""

from __future__ import annotations

from collections.abc import Iterator

from dockgate.gateway.protocol import Channel, DeviceMessage, PowerEvent, StationStatus, Telemetry

Tags = dict[str, str | int]
Fields = dict[str, float | int | bool | str]
Point = tuple[str, Tags, Fields, float]  # measurement, tags, fields, epoch seconds


def points(message: DeviceMessage) -> Iterator[Point]:
    """The points one validated device message yields (none for most channels)."""
    payload = message.payload
    ts = message.effective_ts / 1000.0  # the receive time where the device clock is off
    if message.channel is Channel.TELEMETRY and isinstance(payload, Telemetry):
        tags: Tags = {"network": message.device.network, "vehicle": payload.device_id}
        yield (
            "vehicle",
            tags,
            {
                "lat": payload.lat,
                "lon": payload.lng,
                "gps_accuracy_m": payload.gps_accuracy,
                "speed_kph": payload.speed,
                "battery": payload.battery,
                "locked": payload.lock.value == "locked",
                "max_speed_kph": payload.max_speed,
                "odometer_m": payload.odometer,
            },
            ts,
        )
    elif message.channel is Channel.STATUS and isinstance(payload, StationStatus):
        tags = {"network": message.device.network, "station": payload.device_id}
        free = sum(1 for spot in payload.spots if spot.vehicle_id is None)
        yield "station", tags, {"spots_free": free, "mains": payload.mains}, ts
    elif message.channel is Channel.POWER and isinstance(payload, PowerEvent):
        tags = {"network": message.device.network, "station": payload.device_id}
        yield "station", tags, {"mains": payload.type == "station-power-restored"}, ts
