"""`dockgate tag`: NTAG 424 DNA SUN messages: verify and simulate."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dockgate.gateway.cli.options import with_options

if TYPE_CHECKING:
    from dockgate.gateway.sun.keys import TagKeys
    from dockgate.gateway.sun.profiles import TagProfile
    from dockgate.gateway.sun.replay import ReplayStore
    from dockgate.gateway.sun.verifier import SunVerifier
    from dockgate.sim.sdm import SdmTag

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


def _make_cli_keys(fields: dict[str, str | None], keys_file: Path | None) -> TagKeys | None:
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
    """Key sets for batch lines, built once per distinct key tuple (bounded); a line whose
    key fields do not make a key set gets the reason instead."""

    def __init__(self) -> None:
        from dockgate.gateway.sun import reasons
        from dockgate.gateway.sun.cache import BoundedCache
        from dockgate.gateway.sun.core import SunError, unhex
        from dockgate.gateway.sun.keys import make_keys

        self.R = reasons

        def build(spec: tuple[Any, ...]) -> TagKeys | str:
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

    def get(self, line: dict[str, Any], default: TagKeys | None = None) -> TagKeys | str:
        spec = tuple(map(line.get, _KEY_FIELDS))
        if default is not None and spec == (None,) * len(_KEY_FIELDS):
            return default
        try:
            return self._cache.get(spec)
        except TypeError:  # unhashable values (lists, objects)
            return self.R.BAD_INPUT


def _run_batch(state: Path | None, default_keys: TagKeys | None = None) -> None:
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


@dataclass(frozen=True, kw_only=True)
class VerifyOptions:
    """The options of ``dockgate tag verify``."""

    url: Annotated[str | None, typer.Argument(help="A scanned SUN URL (omit with --batch).")] = None
    profile: Annotated[
        str | None, typer.Option(help="Tag profile name (default: first match).")
    ] = None
    config: Annotated[Path | None, typer.Option(help="TOML file with a \\[sun] table.")] = None
    batch: Annotated[
        bool, typer.Option("--batch", help="JSON lines on stdin, one result per line.")
    ] = False
    state: Annotated[Path | None, typer.Option(help="Replay store (SQLite); none: no memory.")] = (
        None
    )
    reader_uid: Annotated[str | None, typer.Option(help="UID the reader saw (hex, 7 bytes).")] = (
        None
    )
    picc_data: Annotated[str | None, typer.Option(help="Raw field: encrypted PICC data (hex).")] = (
        None
    )
    cmac: Annotated[str | None, typer.Option(help="Raw field: SDMMAC (16 hex).")] = None
    enc_file_data: Annotated[str | None, typer.Option(help="Raw field: SDMENCFileData (hex).")] = (
        None
    )
    mac_input: Annotated[str, typer.Option(help="Raw field: the exact ASCII MAC window.")] = ""
    uid: Annotated[str | None, typer.Option(help="Raw field: plain mirrored UID (hex).")] = None
    read_ctr: Annotated[
        str | None, typer.Option(help="Raw field: plain counter (6 hex, MSB first).")
    ] = None
    mode: Annotated[str | None, typer.Option(help="aes | lrp (default: by PICC data length).")] = (
        None
    )
    meta_read_key: Annotated[
        str | None, typer.Option(help="SDM meta read key (hex). Env: DOCKGATE_META_READ_KEY.")
    ] = None
    file_read_key: Annotated[
        str | None, typer.Option(help="SDM file read key (hex). Env: DOCKGATE_FILE_READ_KEY.")
    ] = None
    master_key: Annotated[
        str | None, typer.Option(help="Master key for --kdf (hex). Env: DOCKGATE_MASTER_KEY.")
    ] = None
    kdf: Annotated[str | None, typer.Option(help="an10922 | sdm-backend. Env: DOCKGATE_KDF.")] = (
        None
    )
    kdf_suffix: Annotated[
        str | None,
        typer.Option(help="AN10922: bytes after the UID (hex). Env: DOCKGATE_KDF_SUFFIX."),
    ] = None
    keys_file: Annotated[
        Path | None,
        typer.Option(
            "--keys-file",
            help="TOML or JSON file with meta_read_key, file_read_key, master_key, kdf, "
            "kdf_suffix (keep it chmod 600).",
        ),
    ] = None

    def key_options(self) -> dict[str, str | None]:
        """The key fields as given on the command line."""
        return {
            "meta_read_key": self.meta_read_key,
            "file_read_key": self.file_read_key,
            "master_key": self.master_key,
            "kdf": self.kdf,
            "kdf_suffix": self.kdf_suffix,
        }


@app.command()
@with_options(VerifyOptions)
def verify(opts: VerifyOptions) -> None:
    """Verify a SUN message: a URL with a profile, raw fields, or JSON lines (--batch).

    Keys, in order of precedence: the --*-key options (visible in process listings: prefer the others), --keys-file, then the environment variables DOCKGATE_META_READ_KEY, DOCKGATE_FILE_READ_KEY, DOCKGATE_MASTER_KEY, DOCKGATE_KDF, DOCKGATE_KDF_SUFFIX. They override the key sets of --config; with --batch they serve lines without key fields.
    """  # noqa: E501
    fields = resolve_key_fields(opts.key_options(), opts.keys_file)
    keys = _make_cli_keys(fields, opts.keys_file)
    if opts.batch:
        _run_batch(opts.state, keys)
        return

    import orjson

    verifier, store = _open_verifier(opts, keys)
    rid = None
    if opts.reader_uid is not None:
        try:
            rid = bytes.fromhex(opts.reader_uid)
        except ValueError:
            raise typer.BadParameter("must be hex", param_hint="--reader-uid") from None
    try:
        valid, payload = _verify_once(verifier, opts, keys, rid)
    finally:
        if store is not None:
            store.close()
    sys.stdout.write(orjson.dumps(payload).decode() + "\n")
    raise typer.Exit(0 if valid else 1)


def _open_verifier(
    opts: VerifyOptions, keys: TagKeys | None
) -> tuple[SunVerifier, ReplayStore | None]:
    """The verifier of ``--config`` (the command-line keys replacing its key sets) and its
    replay store, if any."""
    from dockgate.gateway.sun.replay import ReplayStore
    from dockgate.gateway.sun.settings import load_sun_settings
    from dockgate.gateway.sun.verifier import SunVerifier

    try:
        settings = load_sun_settings(opts.config)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot load {opts.config}: {exc}", err=True)
        raise typer.Exit(2) from None
    replay_db = opts.state if opts.state is not None else settings.replay_db
    store = ReplayStore(replay_db) if replay_db else None
    verifier = SunVerifier(settings, store=store)
    if keys is not None and opts.url is not None:
        verifier.key_sets = {name: keys for name in verifier.key_sets} or {
            settings.default_key_set: keys
        }
        verifier.modes = dict.fromkeys(verifier.key_sets, opts.mode)
    return verifier, store


def _verify_once(
    verifier: SunVerifier, opts: VerifyOptions, keys: TagKeys | None, rid: bytes | None
) -> tuple[bool, dict[str, object]]:
    """Verify the URL or the raw fields: whether valid, and the JSON line to print."""
    if opts.url is not None:
        result = verifier.verify_url(opts.url, reader_uid=rid, profile=opts.profile)
        return result.valid, result.as_dict() | {"profile": result.profile, "record": result.record}
    if opts.cmac is not None:
        result = verifier.verify_fields(
            picc_data=opts.picc_data,
            cmac=opts.cmac,
            enc_file_data=opts.enc_file_data,
            mac_input=opts.mac_input,
            uid=opts.uid,
            read_ctr=opts.read_ctr,
            mode=opts.mode,
            keys=keys,
            reader_uid=rid,
        )
        return result.valid, result.as_dict()
    raise typer.BadParameter("give a URL, --cmac with raw fields, or --batch")


@dataclass(frozen=True, kw_only=True)
class SimulateOptions:
    """The options of ``dockgate tag simulate``."""

    uid: Annotated[str, typer.Option(help="Tag UID (hex, 7 bytes).")] = "04de5f1eacc040"
    mode: Annotated[str, typer.Option(help="aes | lrp")] = "aes"
    profile: Annotated[str, typer.Option(help="Tag profile (URL layout).")] = "query-picc-cmac"
    count: Annotated[int, typer.Option(min=1, help="How many reads.")] = 1
    read_ctr: Annotated[
        int, typer.Option(min=0, max=0xFFFFFE, help="Counter before the first read.")
    ] = 0
    base: Annotated[str, typer.Option(help="Fills {base}.")] = "https://tap.dockgate.example/t"
    record: Annotated[str, typer.Option(help="Fills {record} (NFC platform record id).")] = "1044"
    meta_read_key: Annotated[str, typer.Option(help="SDM meta read key (hex).")] = "0" * 32
    file_read_key: Annotated[str, typer.Option(help="SDM file read key (hex).")] = "0" * 32
    master_key: Annotated[str | None, typer.Option(help="Derive keys from this master key.")] = None
    kdf: Annotated[str, typer.Option(help="an10922 | sdm-backend (with --master-key).")] = "an10922"
    kdf_suffix: Annotated[str, typer.Option(help="AN10922: bytes after the UID (hex).")] = ""
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="Print JSON lines for `verify --batch`.")
    ] = False


@app.command()
@with_options(SimulateOptions)
def simulate(opts: SimulateOptions) -> None:
    """Print SUN URLs read from a simulated NTAG 424 DNA (or batch lines with --jsonl)."""
    try:
        uid = bytes.fromhex(opts.uid)
    except ValueError:
        raise typer.BadParameter("must be hex", param_hint="--uid") from None
    meta, file_, master = _simulated_keys(opts, uid)
    tag = _simulated_tag(opts, uid, meta, file_)
    out = sys.stdout
    for _ in range(opts.count):
        url = tag.next_url()
        if opts.jsonl:
            out.write(_batch_line(opts, tag.tag_profile, url, meta, master) + "\n")
        else:
            out.write(url + "\n")


def _simulated_keys(
    opts: SimulateOptions, uid: bytes
) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The tag's meta and file read keys (derived with --kdf from --master-key if given) and
    the master key."""
    from dockgate.sim.sdm import diversify_an10922, sdm_backend_keys

    meta = _parse_key(opts.meta_read_key, "--meta-read-key")
    file_ = _parse_key(opts.file_read_key, "--file-read-key")
    master = _parse_key(opts.master_key, "--master-key")
    if master is None:
        return meta, file_, None
    if opts.kdf == "an10922":
        file_ = diversify_an10922(master, uid, bytes.fromhex(opts.kdf_suffix))
        meta = meta if opts.meta_read_key != "0" * 32 else master
    elif opts.kdf == "sdm-backend":
        meta, file_ = sdm_backend_keys(master, uid)
    else:
        raise typer.BadParameter("an10922 | sdm-backend", param_hint="--kdf")
    return meta, file_, master


def _simulated_tag(
    opts: SimulateOptions, uid: bytes, meta: bytes | None, file_: bytes | None
) -> SdmTag:
    from dockgate.sim.sdm import SdmTag

    try:
        return SdmTag(
            uid=uid,
            mode=opts.mode,
            meta_read_key=meta or bytes(16),
            file_read_key=file_ or bytes(16),
            profile=opts.profile,
            base=opts.base,
            record=opts.record,
            read_ctr=opts.read_ctr,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _batch_line(
    opts: SimulateOptions, profile: TagProfile, url: str, meta: bytes | None, master: bytes | None
) -> str:
    """One ``verify --batch`` line: the URL's raw fields and the keys to verify them with."""
    import orjson

    f = profile.extract(url)
    assert f is not None
    line: dict[str, object] = {"mode": opts.mode, "cmac": f.cmac, "mac_input": f.mac_input.decode()}
    for name, value in (
        ("picc_data", f.picc_data),
        ("enc_file_data", f.enc),
        ("uid", f.uid),
        ("read_ctr", f.ctr),
    ):
        if value is not None:
            line[name] = value
    if master is not None:
        line |= {"master_key": opts.master_key, "kdf": opts.kdf}
        if opts.kdf == "an10922":
            line |= {"kdf_suffix": opts.kdf_suffix, "meta_read_key": (meta or b"").hex()}
    else:
        line |= {"meta_read_key": opts.meta_read_key, "file_read_key": opts.file_read_key}
    return orjson.dumps(line).decode()
