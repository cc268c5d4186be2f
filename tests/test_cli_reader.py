"""`dockgate reader list/watch` as a real process against the real pcscd."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from dockgate.sim.ntag424 import CARD_UID, Ntag424Tag, StaticNdef, card
from dockgate.sim.services.pcscd import PcscdService
from dockgate.sim.transports import VpcdCard
from tests.support.taps import FILE, META

CLI = [sys.executable, "-m", "dockgate.gateway.cli", "reader"]


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "dockgate.toml"
    path.write_text(
        "[sun]\n"
        f'replay_db = "replay.db"\n'
        f'key_sets.default.meta_read_key = "{META.hex()}"\n'
        f'key_sets.default.file_read_key = "{FILE.hex()}"\n'
    )
    return path


def _read_line(proc: subprocess.Popen[str], timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the watch prints within seconds or the test times out
    assert line, f"watch ended early: {proc.stderr.read() if proc.stderr else ''}"
    assert time.monotonic() < deadline
    return json.loads(line)


def test_list_json(pcscd_service: PcscdService) -> None:
    out = subprocess.run([*CLI, "list", "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    names = [json.loads(line)["reader"] for line in out.stdout.splitlines()]
    assert set(pcscd_service.readers) <= set(names)


def test_watch_json_sun_card_and_plain_tag(pcscd_service: PcscdService, tmp_path: Path) -> None:
    name = pcscd_service.readers[1]
    proc = subprocess.Popen(
        [
            *CLI,
            "watch",
            "--json",
            "--config",
            str(_config(tmp_path)),
            "--reader",
            name,
            "--count",
            "2",
            "--timeout",
            "40",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sun_card = card(meta_read_key=META, file_read_key=FILE)
        with VpcdCard(sun_card, port=pcscd_service.port_of(name)):
            first = _read_line(proc, 30)
        time.sleep(1.0)  # let pcscd see the removal
        plain = Ntag424Tag(CARD_UID, StaticNdef("https://shop.example/item/42"))
        with VpcdCard(plain, port=pcscd_service.port_of(name)):
            second = _read_line(proc)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
    assert first["valid"] is True and first["reason"] is None
    assert first["uid"] == CARD_UID.hex() and first["read_ctr"] == 1 and first["reader"] == name
    assert str(first["url"]).startswith("https://tap.dockgate.example/t?picc_data=")
    assert second["valid"] is False and second["reason"] == "unknown_profile"
    assert second["url"] == "https://shop.example/item/42"
    assert (tmp_path / "replay.db").exists()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert META.hex() not in first["url"] + stderr and FILE.hex() not in stderr


def test_watch_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    secret = "0123456789abcdef0123456789abcdeZ"
    bad.write_text(f'[sun]\nkey_sets.default.file_read_key = "{secret}"\n')
    out = subprocess.run(
        [*CLI, "watch", "--json", "--config", str(bad)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    error = json.loads(out.stdout)
    assert error["error"] == "bad_config" and "file_read_key" in error["detail"]
    assert secret not in out.stdout + out.stderr


def test_watch_pn532_on_a_serial_line(serial_pty, tmp_path: Path) -> None:
    from dockgate.sim.transports.pn532_serial import Pn532Simulator

    with Pn532Simulator(serial_pty.device_path) as sim:
        proc = subprocess.Popen(
            [
                *CLI,
                "watch",
                "--json",
                "--driver",
                "pn532",
                "--path",
                str(serial_pty.host_path),
                "--config",
                str(_config(tmp_path)),
                "--count",
                "1",
                "--timeout",
                "40",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            sim.present(card(meta_read_key=META, file_read_key=FILE))
            line = _read_line(proc, 30)
            assert proc.wait(timeout=10) == 0
        finally:
            sim.remove()
            proc.kill()
            proc.wait()
    assert line["valid"] is True and line["uid"] == CARD_UID.hex() and line["read_ctr"] == 1
    assert line["reader"] == f"pn532:{serial_pty.host_path}"


def test_watch_driver_options_are_checked(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    for args, words in (
        (["--driver", "pn532"], "--path"),
        (["--driver", "pcsc", "--path", "/dev/ttyS0"], "--reader"),
        (["--driver", "nfcpy", "--reader", "x"], "--path"),
        (["--driver", "bluetooth"], "pcsc, nfcpy or pn532"),
    ):
        out = subprocess.run(
            [*CLI, "watch", "--json", "--config", config, *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        error = json.loads(out.stdout)
        assert error["error"] == "bad_driver" and words in error["detail"], error
