"""`dockgate tag verify` and `dockgate tag simulate` as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKGATE = str(Path(sys.executable).parent / "dockgate")
SECRET = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOCKGATE, "tag", *args], input=stdin, capture_output=True, text=True, timeout=60
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
