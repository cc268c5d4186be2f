"""`dockgate reader`: NFC readers: list them, watch taps, publish them on the broker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from dockgate.gateway.cli.options import with_options

if TYPE_CHECKING:
    from dockgate.drivers.readers.broker_tap import PublisherSettings, TapPublisher
    from dockgate.gateway.readers import ReaderDriver, TapEvent
    from dockgate.gateway.taps import Tap, Verifier

app = typer.Typer(
    help="NFC readers: list them, watch taps, publish them on the broker.", no_args_is_help=True
)


def _fail(code: str, detail: str, as_json: bool, exit_code: int = 1) -> NoReturn:
    """A machine-readable error (JSON on stdout with --json, text on stderr otherwise)."""
    if as_json:
        import orjson

        typer.echo(orjson.dumps({"error": code, "detail": detail}).decode())
    else:
        typer.echo(f"error: {code}: {detail}", err=True)
    raise typer.Exit(exit_code)


@app.command("list")
def list_readers(
    as_json: bool = typer.Option(False, "--json", help="One JSON line per reader."),
) -> None:
    """Show the PC/SC readers pcscd offers."""
    from dockgate.drivers.readers.pcsc import PcscError, pcsc_reader_names

    try:
        names = pcsc_reader_names()
    except PcscError as exc:
        _fail("pcsc_unavailable", str(exc), as_json)
    if as_json:
        import orjson

        for name in names:
            typer.echo(orjson.dumps({"reader": name, "driver": "pcsc"}).decode())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("reader", "driver")
    for name in names:
        table.add_row(name, "pcsc")
    Console().print(table if names else "no PC/SC readers")


@app.command("watch")
def watch(
    as_json: bool = typer.Option(False, "--json", help="One JSON line per tap, for scripts."),
    config: Path | None = typer.Option(None, "--config", help="TOML file with a [sun] table."),
    reader: list[str] = typer.Option([], "--reader", help="Only readers whose name has this."),
    count: int | None = typer.Option(None, "--count", min=1, help="Stop after this many taps."),
    timeout: float | None = typer.Option(None, "--timeout", min=0.1, help="Stop after seconds."),
    duplicates: bool = typer.Option(False, "--duplicates", help="Also show repeated reads."),
    driver: str = typer.Option(
        "pcsc", "--driver", help="pcsc (readers of pcscd), nfcpy or pn532 (a serial line)."
    ),
    path: str | None = typer.Option(
        None,
        "--path",
        help="nfcpy: a device path (usb, usb:054c:06c3, tty:USB0:pn532, udp:HOST:PORT; "
        "default usb). pn532: the serial port (required), e.g. /dev/ttyUSB0.",
    ),
) -> None:
    """Show live taps, verified with the keys and profiles of --config."""
    import asyncio

    from pydantic import ValidationError

    from dockgate.gateway.sun import ReplayStore, SunVerifier, load_sun_settings

    try:
        settings = load_sun_settings(config)
        verifier = SunVerifier(
            settings, ReplayStore(settings.replay_db) if settings.replay_db else None
        )
    except ValidationError as exc:  # hide_input_in_errors: keys never appear here
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail("bad_config", problems, as_json, 2)
    except (OSError, ValueError) as exc:
        _fail("bad_config", f"{type(exc).__name__}: {exc}", as_json, 2)
    import contextlib

    try:
        source = _driver(driver, path, reader)
    except ValueError as exc:
        _fail("bad_driver", str(exc), as_json, 2)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_watch(verifier, source, as_json, count, timeout, duplicates))


def _driver(kind: str, path: str | None, readers: list[str]) -> ReaderDriver:
    """The reader driver named by ``--driver`` (nothing opened yet)."""
    from dockgate.drivers.readers import ReaderSpec, make_reader

    if kind == "pcsc" and path is not None:
        raise ValueError("--path is for nfcpy and pn532; use --reader with pcsc")
    if kind != "pcsc" and readers:
        raise ValueError("--reader filters PC/SC readers; use --path with nfcpy and pn532")
    if kind == "pn532" and not path:
        raise ValueError("pn532 needs --path, the serial port (e.g. /dev/ttyUSB0)")
    return make_reader(ReaderSpec(kind, path=path, pcsc_readers=tuple(readers)))


async def _watch(
    verifier: Verifier,
    source: ReaderDriver,
    as_json: bool,
    count: int | None,
    timeout: float | None,
    duplicates: bool,
) -> None:
    import asyncio
    import contextlib

    from dockgate.gateway.taps import TapHandler

    handler = TapHandler(verifier)
    shown = 0
    async with source as driver:

        async def loop() -> None:
            nonlocal shown
            async for tap in handler.run(driver.taps()):
                if tap.duplicate and not duplicates:
                    continue
                _show(tap, as_json)
                shown += 1
                if count is not None and shown >= count:
                    return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loop(), timeout)


def _show(tap: Tap, as_json: bool) -> None:
    line = tap.as_dict()
    if as_json:
        import orjson

        typer.echo(orjson.dumps(line).decode(), nl=True)
        return
    mark = "[green]accepted[/]" if line["valid"] else f"[red]rejected: {line['reason']}[/]"
    if line["duplicate"]:
        mark += " (same tap again)"
    from rich.console import Console
    from rich.markup import escape

    Console(highlight=False).print(
        f"{escape(str(line['reader']))}  uid={line['uid']}  ctr={line['read_ctr']}  "
        f"record={line['record']}  {mark}\n  {escape(str(line['url']))}"
    )


@dataclass(frozen=True, kw_only=True)
class PublishOptions:
    """What ``dockgate reader publish`` takes: the reader, the broker, the account."""

    reader_id: Annotated[str, typer.Option("--reader", help="This reader's id (its topic's).")]
    broker: Annotated[str, typer.Option("--broker", help="The site's broker, HOST:PORT.")]
    network: Annotated[int, typer.Option(min=1, help="Network id in the topic tree.")] = 1
    driver: Annotated[str, typer.Option(help="pcsc, nfcpy or pn532.")] = "pcsc"
    path: Annotated[str | None, typer.Option(help="nfcpy device path; pn532 port.")] = None
    pcsc_reader: Annotated[
        list[str] | None, typer.Option(help="pcsc: only readers whose name has this.")
    ] = None
    username: Annotated[
        str | None, typer.Option(help="Broker account (default: reader-<network>-<id>).")
    ] = None
    password_file: Annotated[
        Path | None,
        typer.Option(help="File with the account's password (or DOCKGATE_READER_PASSWORD)."),
    ] = None
    tls: Annotated[bool, typer.Option(help="Connect with TLS.")] = False
    ca_file: Annotated[Path | None, typer.Option(help="CA certificate (PEM).")] = None
    max_age: Annotated[float, typer.Option(min=1.0, help="Seconds a tap is worth sending.")] = 30.0
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many taps.")] = None
    timeout: Annotated[float | None, typer.Option(min=0.1, help="Stop after seconds.")] = None
    as_json: Annotated[bool, typer.Option("--json", help="A JSON line per tap, a summary.")] = False


@app.command("publish")
@with_options(PublishOptions)
def publish(opts: PublishOptions) -> None:
    """Publish this reader's taps on the broker for the leading gateway to verify (no keys
    here: the gateway holds them). Exits 1 if a tap did not reach the broker."""
    import asyncio
    import contextlib

    settings = _publisher_settings(opts)
    if opts.pcsc_reader and opts.driver != "pcsc":
        _fail(
            "bad_driver",
            "--pcsc-reader is for pcsc; use --path with nfcpy and pn532",
            opts.as_json,
            2,
        )
    try:
        source = _driver(opts.driver, opts.path, opts.pcsc_reader or [])
    except ValueError as exc:
        _fail("bad_driver", str(exc), opts.as_json, 2)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_publish(settings, source, opts))


def _publisher_settings(opts: PublishOptions) -> PublisherSettings:
    """The publisher's settings from the options; exit 2 naming what is wrong (no secret)."""
    import os

    from pydantic import SecretStr, ValidationError

    from dockgate.drivers.readers.broker_tap import PublisherSettings

    host, sep, port = opts.broker.removeprefix("mqtt://").rpartition(":")
    if not sep or not host or not port.isdigit():
        _fail("bad_broker", f"--broker must be HOST:PORT, got {opts.broker!r}", opts.as_json, 2)
    password = os.environ.get("DOCKGATE_READER_PASSWORD")
    if opts.password_file is not None:
        try:
            password = opts.password_file.read_text().strip()
        except OSError as exc:
            _fail("bad_password_file", f"{type(exc).__name__}", opts.as_json, 2)
    try:
        return PublisherSettings(
            reader_id=opts.reader_id,
            network=opts.network,
            host=host,
            port=int(port),
            username=opts.username,
            password=SecretStr(password) if password is not None else None,
            tls=opts.tls,
            ca_file=opts.ca_file,
            max_age=opts.max_age,
        )
    except ValidationError as exc:  # the password is a SecretStr: never in the message
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail("bad_reader", problems, opts.as_json, 2)


async def _publish(settings: PublisherSettings, source: ReaderDriver, opts: PublishOptions) -> None:
    import asyncio
    import contextlib

    from dockgate.drivers.readers.broker_tap import TapPublisher

    async with TapPublisher(settings) as publisher:

        def shown(event: TapEvent, seq: int) -> None:
            _show_published(publisher, event, seq, opts.as_json)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(publisher.forward(source, opts.count, shown), opts.timeout)
        await publisher.drain(5.0)
        _show_summary(publisher, opts.as_json)
    status = publisher.status()
    if status["queued"] or status["refused"] or status["expired"] or status["dropped"]:
        raise typer.Exit(1)  # not every tap reached the broker


def _show_published(publisher: TapPublisher, event: TapEvent, seq: int, as_json: bool) -> None:
    line = {"reader": publisher.device.device_id, "seq": seq, "error": event.error}
    if as_json:
        import orjson

        typer.echo(orjson.dumps(line).decode())
    else:
        typer.echo(
            f"{line['reader']}  tap {seq} queued" + (f"  ({event.error})" * bool(event.error))
        )


def _show_summary(publisher: TapPublisher, as_json: bool) -> None:
    status = publisher.status()
    if as_json:
        import orjson

        typer.echo(orjson.dumps({"summary": status}).decode())
    else:
        typer.echo(
            f"published {status['acked']} acknowledged, {status['queued']} left, "
            f"{status['expired']} expired, {status['dropped']} dropped, "
            f"{status['refused']} refused by the broker"
        )
