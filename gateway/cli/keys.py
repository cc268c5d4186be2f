"""`dockgate keys`: the key-encryption key (KEK) that seals the stored tag and record keys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from dockgate.gateway.sealing import Kek

app = typer.Typer(
    help="The key-encryption key (KEK) that seals the stored tag and record keys.",
    no_args_is_help=True,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


@app.command()
def generate(
    path: Path = typer.Argument(..., help="Where to write the new KEK (refused if it exists)."),
) -> None:
    """Write a new random KEK (hex, mode 0600), e.g. /etc/dockgate/kek for LoadCredential=."""
    from dockgate.gateway.sealing import KekError, generate_kek_file

    try:
        kek = generate_kek_file(path)
    except FileExistsError:
        raise _fail(f"{path} exists: not replaced") from None
    except (KekError, OSError) as exc:
        raise _fail(f"cannot write {path}: {exc}") from None
    typer.echo(f"wrote a new KEK to {path} (id {kek.id})")


def _current_kek(config: Path | None, kek_file: Path | None) -> tuple[Path, Kek, str | None]:
    """The data directory, the KEK the stored keys are sealed under now, the store's URL."""
    from dockgate.gateway.daemon.settings import ConfigError, load_settings
    from dockgate.gateway.sealing import load_kek, read_kek_file

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    data_dir, url = Path(settings.site.data_dir), settings.store.url
    if kek_file is not None:
        return data_dir, read_kek_file(kek_file), url
    return data_dir, load_kek(data_dir, kek_file=settings.secrets.kek_file, generate=False), url


@app.command()
def rotate(
    new_kek_file: Path = typer.Option(
        ..., "--new-kek-file", help="The new KEK (make one with `dockgate keys generate`)."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="The daemon's TOML file."),
    kek_file: Path | None = typer.Option(
        None,
        "--kek-file",
        help="The KEK in use now (default: where the daemon finds it, e.g. [secrets] kek_file).",
    ),
) -> None:
    """Re-seal every stored key under a new KEK, in one transaction (stop the daemon first).

    Afterwards point the daemon at the new KEK (LoadCredential=, kek_file, DOCKGATE_KEK or
    <data_dir>/kek) and destroy the old one: nothing needs it any more.
    """
    from dockgate.gateway.daemon.state import DATABASE, open_store
    from dockgate.gateway.sealing import KekError, read_kek_file
    from dockgate.gateway.store import StoreError

    try:
        data_dir, old, url = _current_kek(config, kek_file)
        new = read_kek_file(new_kek_file)
        if new.id == old.id:
            raise _fail(f"{new_kek_file} holds the KEK in use (id {old.id}): nothing to do")
        if url is None and not (data_dir / DATABASE).exists():
            raise _fail(f"no database at {data_dir / DATABASE}")
        store = open_store(data_dir, old, url)
        try:
            count = store.sealed_keys.reseal(new)
        finally:
            store.close()
    except (KekError, StoreError) as exc:
        raise _fail(f"cannot rotate: {exc}") from None
    typer.echo(f"re-sealed {count} stored key(s) under KEK {new.id} (was {old.id})")
    typer.echo(f"now give the daemon the KEK in {new_kek_file} and destroy the old one")
