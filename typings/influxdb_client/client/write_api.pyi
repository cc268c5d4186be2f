from collections.abc import Iterable

class WriteOptions: ...

SYNCHRONOUS: WriteOptions

class WriteApi:
    def write(
        self,
        bucket: str,
        org: str | None = None,
        record: str | Iterable[str] | None = None,
        write_precision: str = ...,
    ) -> None: ...
