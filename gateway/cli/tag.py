"""`dockgate tag`: NTAG 424 DNA SUN messages: verify and simulate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="NTAG 424 DNA SUN messages: verify and simulate.", no_args_is_help=True)

_KEY_FIELDS = ("meta_read_key", "file_read_key", "master_key", "kdf", "kdf_suffix")
# key fields that may come from the environment instead of the command line
ENV_KEYS = {name: "DOCKGATE_" + name.upper() for name in _KEY_FIELDS}


def _load_keys_file(path: Path) -> dict[str, str]:
    """Key fields from a TOML or JSON file (``.json`` is JSON, anything else TOML)."""
    import json
    import stat
    import tomllib

    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
        mode = path.stat().st_mode
    except (OSError, ValueError) as exc:  # tomllib/json errors are ValueErrors
        kind = "cannot read" if isinstance(exc, OSError) else "cannot parse"
        raise typer.BadParameter(f"{kind} {path}", param_hint="--keys-file") from None
    if not isinstance(data, dict):
        raise typer.BadParameter("expected a table of key fields", param_hint="--keys-file")
    unknown = sorted(set(data) - set(_KEY_FIELDS))
    if unknown:
        raise typer.BadParameter(
            f"unknown fields {unknown} (expected {list(_KEY_FIELDS)})", param_hint="--keys-file"
        )
    for name, value in data.items():
        if not isinstance(value, str):
            raise typer.BadParameter(f"{name} must be a string", param_hint="--keys-file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        typer.echo(f"warning: {path} is readable by other users (chmod 600 it)", err=True)
    return data


def resolve_key_fields(
    options: dict[str, str | None], keys_file: Path | None, environ: dict[str, str] | None = None
) -> dict[str, str | None]:
    """Each key field from the option, else the keys file, else the environment."""
    import os

    env = os.environ if environ is None else environ
    from_file = _load_keys_file(keys_file) if keys_file is not None else {}
    out: dict[str, str | None] = {}
    for name in _KEY_FIELDS:
        value = options.get(name)
        if value is None:
            value = from_file.get(name)
        if value is None:
            value = env.get(ENV_KEYS[name]) or None
        out[name] = value
    return out


def _key_source(name: str, keys_file: Path | None) -> str:
    option = "--" + name.replace("_", "-")
    return f"{option} (or {ENV_KEYS[name]}{' / --keys-file' if keys_file else ''})"


def _parse_key(text: str | None, name: str) -> bytes | None:
    if text is None:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise typer.BadParameter("must be 32 hex characters", param_hint=name) from None
    if len(raw) != 16 or len(text) != 32:
        raise typer.BadParameter("must be 32 hex characters", param_hint=name)
    return raw


def _make_cli_keys(fields: dict[str, str | None], keys_file: Path | None) -> Any:
    """The key set given on the command line, in a keys file or in the environment."""
    if not (fields["meta_read_key"] or fields["file_read_key"] or fields["master_key"]):
        return None
    from dockgate.gateway.sun.keys import make_keys

    parsed = {
        name: _parse_key(fields[name], _key_source(name, keys_file))
        for name in ("meta_read_key", "file_read_key", "master_key")
    }
    try:
        suffix = bytes.fromhex(fields["kdf_suffix"] or "")
    except ValueError:
        hint = _key_source("kdf_suffix", keys_file)
        raise typer.BadParameter("must be hex", param_hint=hint) from None
    try:
        return make_keys(**parsed, kdf=fields["kdf"], kdf_suffix=suffix)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).split(":")[0]) from None


class _BatchKeys:
    """Key sets for batch lines, built once per distinct key tuple (bounded)."""

    def __init__(self) -> None:
        from dockgate.gateway.sun import reasons
        from dockgate.gateway.sun.cache import BoundedCache
        from dockgate.gateway.sun.core import SunError, unhex
        from dockgate.gateway.sun.keys import make_keys

        self.R, self.SunError = reasons, SunError

        def build(spec: tuple[Any, ...]) -> Any:
            meta, file_, master, kdf, suffix = spec
            try:
                if master is not None:
                    if kdf not in ("an10922", "sdm-backend"):
                        return reasons.UNKNOWN_KDF
                    sfx = unhex(suffix, multiple=1) if suffix else b""
                    if len(sfx) > 24:
                        return reasons.BAD_LENGTH
                    meta_b = None if meta is None else unhex(meta, 16)
                    return make_keys(
                        master_key=unhex(master, 16), kdf=kdf, kdf_suffix=sfx, meta_read_key=meta_b
                    )
                if file_ is None:
                    return reasons.NO_KEY
                return make_keys(
                    meta_read_key=None if meta is None else unhex(meta, 16),
                    file_read_key=unhex(file_, 16),
                )
            except SunError as exc:
                return exc.reason

        self._cache = BoundedCache(build, 4096)

    def get(self, line: dict[str, Any], default: Any = None) -> Any:
        spec = tuple(map(line.get, _KEY_FIELDS))
        if default is not None and spec == (None,) * len(_KEY_FIELDS):
            return default
        try:
            return self._cache.get(spec)
        except TypeError:  # unhashable values (lists, objects)
            return self.R.BAD_INPUT


def _run_batch(state: Path | None, default_keys: Any = None) -> None:
    import orjson

    from dockgate.gateway.sun import reasons as R
    from dockgate.gateway.sun.replay import ReplayStore
    from dockgate.gateway.sun.verifier import SunResult, SunVerifier

    store = ReplayStore(state) if state is not None else None
    verifier = SunVerifier(store=store)
    keys = _BatchKeys()
    loads, dumps = orjson.loads, orjson.dumps
    out = sys.stdout.buffer
    buf: list[bytes] = []
    str_fields = ("picc_data", "enc_file_data", "cmac", "mac_input", "uid", "read_ctr", "mode")
    try:
        for raw in sys.stdin.buffer:
            if not raw.strip():
                continue
            try:
                line = loads(raw)
            except orjson.JSONDecodeError:
                line = None
            if not isinstance(line, dict):
                result = SunResult(valid=False, reason=R.BAD_JSON)
            elif not all(isinstance(v, str | None) for v in map(line.get, str_fields)):
                result = SunResult(valid=False, reason=R.BAD_INPUT)
            elif "cmac" not in line:
                result = SunResult(valid=False, reason=R.MISSING_FIELD)
            else:
                k = keys.get(line, default_keys)
                if isinstance(k, str):
                    result = SunResult(valid=False, reason=k)
                else:
                    result = verifier.verify_fields(
                        picc_data=line.get("picc_data"),
                        cmac=line["cmac"],
                        enc_file_data=line.get("enc_file_data"),
                        mac_input=line.get("mac_input") or b"",
                        uid=line.get("uid"),
                        read_ctr=line.get("read_ctr"),
                        mode=line.get("mode"),
                        keys=k,
                    )
            buf.append(dumps(result.as_dict()))
            if len(buf) >= 4096:
                out.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            out.write(b"\n".join(buf) + b"\n")
        out.flush()
    finally:
        if store is not None:
            store.close()


@app.command()
def verify(
    url: str | None = typer.Argument(None, help="A scanned SUN URL (omit with --batch)."),
    profile: str | None = typer.Option(None, help="Tag profile name (default: first match)."),
    config: Path | None = typer.Option(None, help="TOML file with a \\[sun] table."),
    batch: bool = typer.Option(False, "--batch", help="JSON lines on stdin, one result per line."),
    state: Path | None = typer.Option(None, help="Replay store (SQLite); none: no memory."),
    reader_uid: str | None = typer.Option(None, help="UID the reader saw (hex, 7 bytes)."),
    picc_data: str | None = typer.Option(None, help="Raw field: encrypted PICC data (hex)."),
    cmac: str | None = typer.Option(None, help="Raw field: SDMMAC (16 hex)."),
    enc_file_data: str | None = typer.Option(None, help="Raw field: SDMENCFileData (hex)."),
    mac_input: str = typer.Option("", help="Raw field: the exact ASCII MAC window."),
    uid: str | None = typer.Option(None, help="Raw field: plain mirrored UID (hex)."),
    read_ctr: str | None = typer.Option(None, help="Raw field: plain counter (6 hex, MSB first)."),
    mode: str | None = typer.Option(None, help="aes | lrp (default: by PICC data length)."),
    meta_read_key: str | None = typer.Option(
        None, help="SDM meta read key (hex). Env: DOCKGATE_META_READ_KEY."
    ),
    file_read_key: str | None = typer.Option(
        None, help="SDM file read key (hex). Env: DOCKGATE_FILE_READ_KEY."
    ),
    master_key: str | None = typer.Option(
        None, help="Master key for --kdf (hex). Env: DOCKGATE_MASTER_KEY."
    ),
    kdf: str | None = typer.Option(None, help="an10922 | sdm-backend. Env: DOCKGATE_KDF."),
    kdf_suffix: str | None = typer.Option(
        None, help="AN10922: bytes after the UID (hex). Env: DOCKGATE_KDF_SUFFIX."
    ),
    keys_file: Path | None = typer.Option(
        None,
        "--keys-file",
        help="TOML or JSON file with meta_read_key, file_read_key, master_key, kdf, "
        "kdf_suffix (keep it chmod 600).",
    ),
) -> None:
    """Verify a SUN message: a URL with a profile, raw fields, or JSON lines (--batch).

    Keys, in order of precedence: the --*-key options (visible in process listings: prefer the others), --keys-file, then the environment variables DOCKGATE_META_READ_KEY, DOCKGATE_FILE_READ_KEY, DOCKGATE_MASTER_KEY, DOCKGATE_KDF, DOCKGATE_KDF_SUFFIX. They override the key sets of --config; with --batch they serve lines without key fields.
    """  # noqa: E501
    fields = resolve_key_fields(
        {
            "meta_read_key": meta_read_key,
            "file_read_key": file_read_key,
            "master_key": master_key,
            "kdf": kdf,
            "kdf_suffix": kdf_suffix,
        },
        keys_file,
    )
    keys = _make_cli_keys(fields, keys_file)
    if batch:
        _run_batch(state, keys)
        return

    import orjson

    from dockgate.gateway.sun.replay import ReplayStore
    from dockgate.gateway.sun.settings import load_sun_settings
    from dockgate.gateway.sun.verifier import SunVerifier

    try:
        settings = load_sun_settings(config)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot load {config}: {exc}", err=True)
        raise typer.Exit(2) from None
    store = (
        ReplayStore(state)
        if state is not None
        else settings.replay_db and ReplayStore(settings.replay_db)
    )
    verifier = SunVerifier(settings, store=store or None)
    if keys is not None and url is not None:
        verifier.key_sets = {name: keys for name in verifier.key_sets} or {
            settings.default_key_set: keys
        }
        verifier.modes = dict.fromkeys(verifier.key_sets, mode)
    rid = None
    if reader_uid is not None:
        try:
            rid = bytes.fromhex(reader_uid)
        except ValueError:
            raise typer.BadParameter("must be hex", param_hint="--reader-uid") from None
    try:
        if url is not None:
            result = verifier.verify_url(url, reader_uid=rid, profile=profile)
            payload = result.as_dict() | {"profile": result.profile, "record": result.record}
        elif cmac is not None:
            result = verifier.verify_fields(
                picc_data=picc_data,
                cmac=cmac,
                enc_file_data=enc_file_data,
                mac_input=mac_input,
                uid=uid,
                read_ctr=read_ctr,
                mode=mode,
                keys=keys,
                reader_uid=rid,
            )
            payload = result.as_dict()
        else:
            raise typer.BadParameter("give a URL, --cmac with raw fields, or --batch")
    finally:
        if store:
            store.close()
    sys.stdout.write(orjson.dumps(payload).decode() + "\n")
    raise typer.Exit(0 if result.valid else 1)


@app.command()
def simulate(
    uid: str = typer.Option("04de5f1eacc040", help="Tag UID (hex, 7 bytes)."),
    mode: str = typer.Option("aes", help="aes | lrp"),
    profile: str = typer.Option("query-picc-cmac", help="Tag profile (URL layout)."),
    count: int = typer.Option(1, min=1, help="How many reads."),
    read_ctr: int = typer.Option(0, min=0, max=0xFFFFFE, help="Counter before the first read."),
    base: str = typer.Option("https://tap.dockgate.example/t", help="Fills {base}."),
    record: str = typer.Option("1044", help="Fills {record} (NFC platform record id)."),
    meta_read_key: str = typer.Option("0" * 32, help="SDM meta read key (hex)."),
    file_read_key: str = typer.Option("0" * 32, help="SDM file read key (hex)."),
    master_key: str | None = typer.Option(None, help="Derive keys from this master key."),
    kdf: str = typer.Option("an10922", help="an10922 | sdm-backend (with --master-key)."),
    kdf_suffix: str = typer.Option("", help="AN10922: bytes after the UID (hex)."),
    jsonl: bool = typer.Option(False, "--jsonl", help="Print JSON lines for `verify --batch`."),
) -> None:
    """Print SUN URLs read from a simulated NTAG 424 DNA (or batch lines with --jsonl)."""
    import orjson

    from dockgate.sim.sdm import SdmTag, diversify_an10922, sdm_backend_keys

    try:
        uid_b = bytes.fromhex(uid)
    except ValueError:
        raise typer.BadParameter("must be hex", param_hint="--uid") from None
    meta = _parse_key(meta_read_key, "--meta-read-key")
    file_ = _parse_key(file_read_key, "--file-read-key")
    master = _parse_key(master_key, "--master-key")
    if master is not None:
        if kdf == "an10922":
            file_ = diversify_an10922(master, uid_b, bytes.fromhex(kdf_suffix))
            meta = meta if meta_read_key != "0" * 32 else master
        elif kdf == "sdm-backend":
            meta, file_ = sdm_backend_keys(master, uid_b)
        else:
            raise typer.BadParameter("an10922 | sdm-backend", param_hint="--kdf")
    try:
        tag = SdmTag(
            uid=uid_b,
            mode=mode,
            meta_read_key=meta or bytes(16),
            file_read_key=file_ or bytes(16),
            profile=profile,
            base=base,
            record=record,
            read_ctr=read_ctr,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    prof = tag._profile
    out = sys.stdout
    for _ in range(count):
        url = tag.next_url()
        if not jsonl:
            out.write(url + "\n")
            continue
        f = prof.extract(url)
        assert f is not None
        line: dict[str, Any] = {"mode": mode, "cmac": f.cmac, "mac_input": f.mac_input.decode()}
        for name, value in (
            ("picc_data", f.picc_data),
            ("enc_file_data", f.enc),
            ("uid", f.uid),
            ("read_ctr", f.ctr),
        ):
            if value is not None:
                line[name] = value
        if master is not None:
            line |= {"master_key": master_key, "kdf": kdf}
            if kdf == "an10922":
                line |= {"kdf_suffix": kdf_suffix, "meta_read_key": (meta or b"").hex()}
        else:
            line |= {"meta_read_key": meta_read_key, "file_read_key": file_read_key}
        out.write(orjson.dumps(line).decode() + "\n")
