"""`dockgate tag verify` and `dockgate tag simulate` as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKGATE = str(Path(sys.executable).parent / "dockgate")
SECRET = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


def run(*args: str, stdin: str = "", env: dict[str, str] | None = None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCKGATE_")}
    return subprocess.run(
        [DOCKGATE, "tag", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=base | (env or {}),
    )


def test_verify_an12196_raw_fields() -> None:
    zero = "0" * 32
    p = run(
        "verify",
        "--picc-data",
        "EF963FF7828658A599F3041510671E88",
        "--cmac",
        "94EED9EE65337086",
        "--meta-read-key",
        zero,
        "--file-read-key",
        zero,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {
        "valid": True,
        "uid": "04de5f1eacc040",
        "read_ctr": 61,
        "file_data": None,
        "reason": None,
    }


def test_simulate_then_batch_with_state(tmp_path) -> None:
    sim = run(
        "simulate",
        "--count",
        "3",
        "--jsonl",
        "--mode",
        "lrp",
        "--profile",
        "query-picc-enc-cmac",
        "--meta-read-key",
        SECRET,
        "--file-read-key",
        SECRET,
    )
    assert sim.returncode == 0, sim.stderr
    lines = sim.stdout.splitlines()
    bad = [
        "not json",
        "[1, 2]",
        json.dumps({"picc_data": "zz", "cmac": "00" * 8, "file_read_key": SECRET}),
        json.dumps({"picc_data": "00" * 16, "cmac": "00" * 8, "master_key": SECRET, "kdf": "md5"}),
        json.dumps({"picc_data": 5, "cmac": "00" * 8}),
        json.dumps({"picc_data": "00" * 16}),
    ]
    state = tmp_path / "state.db"
    p = run(
        "verify", "--batch", "--state", str(state), stdin="\n".join([*lines, lines[0], *bad]) + "\n"
    )
    assert p.returncode == 0, p.stderr
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert [o["valid"] for o in out[:3]] == [True, True, True]
    assert [o["read_ctr"] for o in out[:3]] == [1, 2, 3]
    assert out[0]["file_data"] == b"0102030400000000".hex()
    assert [o["reason"] for o in out[3:]] == [
        "replayed",
        "bad_json",
        "bad_json",
        "bad_hex",
        "unknown_kdf",
        "bad_input",
        "missing_field",
    ]
    assert SECRET not in p.stdout + p.stderr
    again = run("verify", "--batch", "--state", str(state), stdin=lines[2] + "\n")
    assert json.loads(again.stdout)["reason"] == "replayed"


def test_batch_diversified_keys() -> None:
    for kdf in ("an10922", "sdm-backend"):
        sim = run(
            "simulate",
            "--count",
            "2",
            "--jsonl",
            "--master-key",
            SECRET,
            "--kdf",
            kdf,
            "--kdf-suffix",
            "3042f5",
        )
        p = run("verify", "--batch", stdin=sim.stdout)
        assert [json.loads(x)["valid"] for x in p.stdout.splitlines()] == [True, True], kdf


def test_verify_url_with_config_and_exit_codes() -> None:
    cfg = ROOT / "config" / "examples" / "sun.toml"
    url = run(
        "simulate",
        "--profile",
        "senzu-play",
        "--base",
        "https://api.senzu.app",
        "--meta-read-key",
        "00112233445566778899aabbccddeeff",
        "--file-read-key",
        "ffeeddccbbaa99887766554433221100",
    ).stdout.strip()
    ok = run("verify", url, "--config", str(cfg))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["profile"] == "senzu-play"
    bad = run("verify", url[:-1] + ("0" if url[-1] != "0" else "1"), "--config", str(cfg))
    assert bad.returncode == 1 and json.loads(bad.stdout)["reason"] == "bad_mac"
    p = run("verify", "--picc-data", "00", "--cmac", "00", "--file-read-key", SECRET[:-1] + "g")
    assert p.returncode == 2 and SECRET[:-1] not in p.stdout + p.stderr


def test_shipped_examples_verify() -> None:
    ex = ROOT / "config" / "examples"
    p = run("verify", "--batch", stdin=(ex / "sun-batch.jsonl").read_text())
    out = [json.loads(x) for x in p.stdout.splitlines()]
    expected = [json.loads(x) for x in (ex / "sun-batch.expected.jsonl").read_text().splitlines()]
    assert out == expected


AN12196 = ("--picc-data", "EF963FF7828658A599F3041510671E88", "--cmac", "94EED9EE65337086")
ZERO = "0" * 32


def test_keys_from_environment() -> None:
    env = {"DOCKGATE_META_READ_KEY": ZERO, "DOCKGATE_FILE_READ_KEY": ZERO}
    p = run("verify", *AN12196, env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["read_ctr"] == 61
    assert run("verify", *AN12196).returncode == 1  # no key without them
    wrong = env | {"DOCKGATE_FILE_READ_KEY": SECRET}
    assert json.loads(run("verify", *AN12196, env=wrong).stdout)["reason"] == "bad_mac"
    # an option beats the environment
    p = run("verify", *AN12196, "--file-read-key", ZERO, env=wrong)
    assert p.returncode == 0, p.stdout
    bad = run("verify", *AN12196, env=env | {"DOCKGATE_FILE_READ_KEY": SECRET[:-1] + "g"})
    assert bad.returncode == 2 and "DOCKGATE_FILE_READ_KEY" in bad.stderr
    assert SECRET[:-1] not in bad.stdout + bad.stderr


def test_keys_file_toml_and_json(tmp_path) -> None:
    toml = tmp_path / "keys.toml"
    toml.write_text(f'meta_read_key = "{ZERO}"\nfile_read_key = "{ZERO}"\n')
    toml.chmod(0o600)
    p = run("verify", *AN12196, "--keys-file", str(toml))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stderr == ""  # private file: no warning
    js = tmp_path / "keys.json"
    js.write_text(json.dumps({"meta_read_key": ZERO, "file_read_key": SECRET}))
    js.chmod(0o644)
    p = run("verify", *AN12196, "--keys-file", str(js))
    assert json.loads(p.stdout)["reason"] == "bad_mac"
    assert "readable by other users" in p.stderr
    # the file beats the environment, an option beats the file
    env = {"DOCKGATE_FILE_READ_KEY": ZERO}
    assert run("verify", *AN12196, "--keys-file", str(js), env=env).returncode == 1
    assert run("verify", *AN12196, "--keys-file", str(js), "--file-read-key", ZERO).returncode == 0
    # the keys never show up in errors
    for text in (f'file_read_key = "{SECRET[:-1]}g"\n', f"file_read_key = {SECRET}\n"):
        toml.write_text(text)
        p = run("verify", *AN12196, "--keys-file", str(toml))
        assert p.returncode == 2 and SECRET[:-1] not in p.stdout + p.stderr, p.stderr
    toml.write_text(f'file_read_key = "{ZERO}"\nfile_key = "{SECRET}"\n')
    p = run("verify", *AN12196, "--keys-file", str(toml))
    assert p.returncode == 2 and "file_key" in p.stderr and SECRET not in p.stderr
    missing = run("verify", *AN12196, "--keys-file", str(tmp_path / "none.toml"))
    assert missing.returncode == 2


def test_keys_file_serves_url_and_batch_lines_without_keys(tmp_path) -> None:
    meta, file_ = "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"
    keys = tmp_path / "keys.toml"
    keys.write_text(f'meta_read_key = "{meta}"\nfile_read_key = "{file_}"\n')
    keys.chmod(0o600)
    sim = run("simulate", "--count", "2", "--meta-read-key", meta, "--file-read-key", file_)
    url = sim.stdout.splitlines()[0]
    assert run("verify", url).returncode == 1
    ok = run("verify", url, "--keys-file", str(keys))
    assert ok.returncode == 0 and json.loads(ok.stdout)["read_ctr"] == 1
    example = ROOT / "config" / "examples" / "sun-keys.toml"
    assert run("verify", sim.stdout.splitlines()[1], "--keys-file", str(example)).returncode == 0
    lines = run(
        "simulate", "--count", "2", "--jsonl", "--meta-read-key", meta, "--file-read-key", file_
    ).stdout.splitlines()
    bare = [json.dumps({k: v for k, v in json.loads(x).items() if "key" not in k}) for x in lines]
    own_keys = json.dumps(json.loads(bare[1]) | {"meta_read_key": meta, "file_read_key": ZERO})
    stdin = "\n".join([*bare, own_keys]) + "\n"
    p = run("verify", "--batch", "--keys-file", str(keys), stdin=stdin)
    assert [json.loads(x)["reason"] for x in p.stdout.splitlines()] == [None, None, "bad_mac"]
    p = run("verify", "--batch", stdin=stdin)  # without default keys
    assert [json.loads(x)["reason"] for x in p.stdout.splitlines()] == [
        "no_key",
        "no_key",
        "bad_mac",
    ]
