"""`dockgate reader`: NFC readers: list them and watch taps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from dockgate.gateway.readers import ReaderDriver
    from dockgate.gateway.taps import Tap, Verifier

app = typer.Typer(help="NFC readers: list them and watch taps.", no_args_is_help=True)


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
