# Minimal stubs for influxdb-client: only the names dockgate uses. The package ships a
# py.typed marker, but Point and InfluxDBClient.close are unannotated and the package root
# does not re-export its names explicitly.
from datetime import datetime

from influxdb_client.client.write_api import WriteApi, WriteOptions

class WritePrecision:
    MS: str
    S: str
    US: str
    NS: str

class Point:
    def __init__(self, measurement_name: str) -> None: ...
    def tag(self, key: str, value: str) -> Point: ...
    def field(self, field: str, value: float | int | bool | str) -> Point: ...
    def time(self, time: int | str | datetime, write_precision: str = ...) -> Point: ...
    def to_line_protocol(self, precision: str | None = None) -> str: ...

class InfluxDBClient:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        debug: bool | None = None,
        timeout: int = 10_000,
        enable_gzip: bool = False,
        org: str | None = None,
    ) -> None: ...
    def write_api(self, write_options: WriteOptions = ...) -> WriteApi: ...
    def close(self) -> None: ...
