"""`dockgate devices` as the operator runs it (a subprocess), against a real Mosquitto.

The broker runs on the files the command writes, next to a gateway account made by
`mosquitto_passwd`: an added device logs in and publishes only on its own topics; a rotated
device's old password is refused once the broker reloads (SIGHUP), the new one accepted; a
revoked device is refused and its live session dropped; `list` shows no secret; bad ids exit
2 and change nothing. With certificates: a TLS listener that takes the certificate's CN as
the username accepts an issued device certificate, and refuses it once it is revoked.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dockgate.gateway.protocol import Channel, DeviceRef, username
from dockgate.gateway.provisioning import SiteCa, load_site_ca, revoked_serials
from dockgate.sim.services.mosquitto import Mosquitto, TlsFiles
from tests.support.broker_login import NOT_AUTHORIZED, ClientTls, Session, login
from tests.support.mqtt import wait_subscribed

pytestmark = pytest.mark.timeout(120)

VEHICLE = DeviceRef.vehicle(1, "SXB001")
OTHER_VEHICLE = DeviceRef.vehicle(1, "SXB002")
STATION = DeviceRef.station(1, "ST-01")
NO_SUBSCRIBERS = 16  # MQTT v5 PUBACK 0x10: accepted, nobody subscribed
GATEWAY_PASSWORD = "gateway-secret-from-mosquitto_passwd"


def dockgate_devices(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m dockgate.gateway.cli devices ...``, as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "dockgate.gateway.cli", "devices", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def device_args(device: DeviceRef) -> list[str]:
    return ["--kind", device.kind.value, "--network", str(device.network), "--id", device.device_id]


class Site:
    """A broker's folder: password file (with a gateway from `mosquitto_passwd`) and ACL."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.passwd = folder / "dockgate.passwd"
        self.acl = folder / "dockgate.acl"
        subprocess.run(
            ["mosquitto_passwd", "-c", "-b", str(self.passwd), "gateway", GATEWAY_PASSWORD],
            check=True,
            timeout=30,
        )

    def files(self) -> list[str]:
        return ["--password-file", str(self.passwd), "--acl-file", str(self.acl)]

    def run(self, command: str, device: DeviceRef, *extra: str) -> subprocess.CompletedProcess[str]:
        return dockgate_devices(command, *device_args(device), *self.files(), *extra)

    def add(self, device: DeviceRef, *extra: str) -> str:
        """Add ``device``; its password (the whole of stdout)."""
        done = self.run("add", device, *extra)
        assert done.returncode == 0, done.stderr
        password = done.stdout.strip()
        assert done.stdout == password + "\n" and len(password) >= 32
        assert password not in done.stderr
        return password

    def broker(self, **kwargs: object) -> Mosquitto:
        return Mosquitto(users=self.passwd, acl=self.acl, persistence=False, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def site() -> Iterator[Site]:
    """A site folder the broker's user can enter (pytest's tmp_path is 0700, root's own)."""
    folder = Path(tempfile.mkdtemp(prefix="dockgate-site-"))
    folder.chmod(0o755)
    yield Site(folder)
    shutil.rmtree(folder, ignore_errors=True)


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``check`` (the broker applies a SIGHUP on its next loop turn, within ~1 s)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_an_added_device_logs_in_and_publishes_only_as_itself(site: Site) -> None:
    gateway_line = site.passwd.read_text()
    password = site.add(VEHICLE)
    site.add(OTHER_VEHICLE)
    assert site.passwd.read_text().startswith(gateway_line)  # mosquitto_passwd's entry intact
    assert stat.S_IMODE(site.passwd.stat().st_mode) == 0o600
    assert stat.S_IMODE(site.acl.stat().st_mode) == 0o644
    with (
        site.broker() as broker,
        Session(broker, "gateway", GATEWAY_PASSWORD) as gateway,
        Session(broker, username(VEHICLE), password) as device,
    ):
        assert gateway.accepted and device.accepted
        wait_subscribed(gateway.client, "dockgate/#")
        assert device.publish(VEHICLE.topic(Channel.TELEMETRY)) == 0
        assert device.publish(OTHER_VEHICLE.topic(Channel.TELEMETRY)) == NOT_AUTHORIZED
        assert device.publish(VEHICLE.topic(Channel.CMD)) == NOT_AUTHORIZED  # read only
        assert login(broker, username(VEHICLE), "not-the-password") == NOT_AUTHORIZED


def test_rotate_refuses_the_old_password_once_the_broker_reloads(site: Site) -> None:
    first = site.add(VEHICLE)
    station_password = site.add(STATION)
    with site.broker() as broker, Session(broker, username(STATION), station_password) as bystander:
        assert login(broker, username(VEHICLE), first) == 0

        done = site.run("rotate", VEHICLE)  # no reload yet: the broker still knows `first`
        assert done.returncode == 0, done.stderr
        second = done.stdout.strip()
        assert "systemctl reload mosquitto" in done.stderr and "kill -HUP" in done.stderr
        assert login(broker, username(VEHICLE), first) == 0
        assert login(broker, username(VEHICLE), second) == NOT_AUTHORIZED

        secret = site.folder / "vehicle.secret"
        done = site.run("rotate", VEHICLE, "--secret-out", secret, "--reload-pid", broker.pid)
        assert done.returncode == 0, done.stderr
        assert done.stdout == ""  # the secret went to the file only
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        third = secret.read_text().strip()
        assert third not in done.stderr and f"pid {broker.pid}" in done.stderr
        assert wait_until(lambda: login(broker, username(VEHICLE), first) == NOT_AUTHORIZED)
        assert login(broker, username(VEHICLE), second) == NOT_AUTHORIZED
        assert login(broker, username(VEHICLE), third) == 0
        assert bystander.connected()  # a reload leaves other devices' sessions alone


def test_a_revoked_device_is_refused_and_dropped_after_sighup(site: Site) -> None:
    password = site.add(VEHICLE)
    station_password = site.add(STATION)
    with (
        site.broker() as broker,
        Session(broker, username(VEHICLE), password) as revoked,
        Session(broker, username(STATION), station_password) as kept,
    ):
        assert revoked.accepted and kept.accepted
        done = site.run("revoke", VEHICLE)
        assert done.returncode == 0, done.stderr
        assert f"{username(VEHICLE)}:" not in site.passwd.read_text()
        assert username(VEHICLE) not in site.acl.read_text()
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGHUP)  # what the printed hint tells the operator to do
        assert wait_until(lambda: not revoked.connected())  # the broker drops its session
        assert login(broker, username(VEHICLE), password) == NOT_AUTHORIZED
        assert kept.connected()
        assert kept.publish(STATION.topic(Channel.STATUS)) == NO_SUBSCRIBERS
        assert login(broker, "gateway", GATEWAY_PASSWORD) == 0


def test_list_shows_the_accounts_and_no_secret(site: Site) -> None:
    passwords = [site.add(VEHICLE), site.add(STATION)]
    done = dockgate_devices("list", "--password-file", site.passwd)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert rows == [
        ["USERNAME", "KIND", "NETWORK", "ID", "CERT"],
        ["gateway", "gateway", "-", "-", "no"],
        [username(VEHICLE), "vehicle", "1", "SXB001", "no"],
        [username(STATION), "station", "1", "ST-01", "no"],
    ]
    hashes_ = [line.split(":", 1)[1] for line in site.passwd.read_text().splitlines()]
    secrets_ = [*passwords, GATEWAY_PASSWORD, *(h.split("$")[3] for h in hashes_)]
    output = done.stdout + done.stderr
    assert "$7$" not in output
    assert [s for s in secrets_ if s in output] == []


@pytest.mark.parametrize(
    ("kind", "network", "device_id"),
    [
        ("vehicle", "1", "SXB/01"),  # a topic separator
        ("vehicle", "1", "SXB#01"),  # a wildcard
        ("vehicle", "1", "SXB"),  # too short for a serial number
        ("station", "1", "-ST01"),
        ("station", "1", "ST 01"),
        ("station", "0", "ST01"),
        ("vehicle", "1000000000", "SXB001"),
        ("scooter", "1", "SXB001"),
    ],
)
def test_bad_ids_exit_2_and_change_nothing(
    site: Site, kind: str, network: str, device_id: str
) -> None:
    before = site.passwd.read_bytes()
    done = dockgate_devices(
        "add", "--kind", kind, "--network", network, "--id", device_id, *site.files()
    )
    assert done.returncode == 2, done.stderr
    assert "Invalid value" in done.stderr
    assert site.passwd.read_bytes() == before and not site.acl.exists()


def test_rotate_and_revoke_refuse_bad_ids_too(site: Site) -> None:
    site.add(VEHICLE)
    before = site.passwd.read_bytes(), site.acl.read_bytes()
    for command in ("rotate", "revoke"):
        bad = ["--kind", "vehicle", "--network", "1", "--id", "SXB/01"]
        done = dockgate_devices(command, *bad, *site.files())
        assert done.returncode == 2 and "invalid vehicle id" in done.stderr, done.stderr
        assert "[A-Za-z0-9]{6,10}" in " ".join(done.stderr.split())  # says what it expects
    assert (site.passwd.read_bytes(), site.acl.read_bytes()) == before


def test_refused_changes_exit_1_with_the_reason(site: Site) -> None:
    site.add(VEHICLE)
    for command, device, reason in (
        ("add", VEHICLE, "exists already"),
        ("rotate", STATION, "no account"),
        ("revoke", STATION, "no account"),
    ):
        done = site.run(command, device)
        assert done.returncode == 1 and reason in done.stderr, done.stderr
        assert done.stdout == ""
    done = site.run("rotate", VEHICLE, "--reload-pid", str(os.getpid()))
    assert done.returncode == 1 and "not mosquitto: no signal sent" in done.stderr


# --- client certificates -------------------------------------------------------------------


def test_rotate_with_cert_reissues_it_and_revokes_the_previous_one(site: Site) -> None:
    ca_dir, cert_dir = site.folder / "ca", site.folder / "certs"
    assert dockgate_devices("ca", "init", "--out", ca_dir).returncode == 0
    ca_args = ["--ca-cert", f"{ca_dir}/site-ca.pem", "--ca-key", f"{ca_dir}/site-ca.key"]
    site.add(VEHICLE, "--cert", *ca_args, "--out", str(cert_dir))
    cert_path = cert_dir / f"{username(VEHICLE)}.pem"
    first = x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number
    crl = ca_dir / "site-ca.crl"
    done = site.run("rotate", VEHICLE, "--cert", *ca_args, "--out", cert_dir, "--crl", crl)
    assert done.returncode == 0, done.stderr
    second = x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number
    assert second != first
    ca = load_site_ca(ca_dir / "site-ca.pem", ca_dir / "site-ca.key")
    assert revoked_serials(ca, crl.read_bytes()) == {first}
    again = dockgate_devices("ca", "init", "--out", ca_dir)
    assert again.returncode == 1 and "exists already" in again.stderr


def server_certificate(ca: SiteCa, folder: Path) -> tuple[Path, Path]:
    """The broker's own certificate for 127.0.0.1, signed by the site CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "site broker")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_an_issued_certificate_logs_in_as_its_device_until_revoked(site: Site) -> None:
    ca_dir, cert_dir = site.folder / "ca", site.folder / "certs"
    done = dockgate_devices("ca", "init", "--out", ca_dir)
    assert done.returncode == 0, done.stderr
    ca_cert, ca_key, crl = ca_dir / "site-ca.pem", ca_dir / "site-ca.key", ca_dir / "site-ca.crl"
    ca_args = ["--ca-cert", ca_cert, "--ca-key", ca_key, "--out", cert_dir]
    site.add(VEHICLE, "--cert", *map(str, ca_args), "--days", "7")
    site.add(STATION)
    user = username(VEHICLE)
    listed = dockgate_devices("list", "--password-file", site.passwd, "--cert-dir", cert_dir)
    assert f"{user} vehicle 1 SXB001 yes" in " ".join(listed.stdout.split())
    on_device = site.folder / "on-device"  # where the operator moves the key
    on_device.mkdir()
    for suffix in (".pem", ".key"):
        shutil.copy(cert_dir / f"{user}{suffix}", on_device / f"{user}{suffix}")
    device_tls = ClientTls(ca_cert, on_device / f"{user}.pem", on_device / f"{user}.key")

    server_cert, server_key = server_certificate(load_site_ca(ca_cert, ca_key), site.folder)
    tls = TlsFiles(ca_cert, server_cert, server_key, client_identity=True, crlfile=crl)
    with site.broker(tls=tls) as broker:
        with Session(broker, tls=device_tls) as device:  # no username: the certificate's CN
            assert device.accepted
            assert device.publish(VEHICLE.topic(Channel.TELEMETRY)) == NO_SUBSCRIBERS
            assert device.publish(STATION.topic(Channel.STATUS)) == NOT_AUTHORIZED
        assert login(broker, None, tls=ClientTls(ca_cert)) is None  # no certificate, no CONNACK

        done = site.run("revoke", VEHICLE, "--crl", crl, *map(str, ca_args))
        assert done.returncode == 0, done.stderr
        assert "systemctl restart mosquitto" in done.stderr
        ca = load_site_ca(ca_cert, ca_key)
        assert revoked_serials(ca, crl.read_bytes()) == {_serial(device_tls)}
        assert not (cert_dir / f"{user}.pem").exists() and not (cert_dir / f"{user}.key").exists()
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGHUP)
        # until a restart the certificate still logs in, but the reloaded ACL grants it nothing
        assert wait_until(lambda: _publish_as(broker, device_tls, VEHICLE) == NOT_AUTHORIZED)

    # Mosquitto reads its CRL only when it starts (the test broker copies it at construction)
    with site.broker(tls=tls) as broker:
        assert login(broker, None, tls=device_tls) is None


def _publish_as(broker: Mosquitto, tls: ClientTls, device: DeviceRef) -> int | None:
    with Session(broker, tls=tls) as session:
        return session.publish(device.topic(Channel.TELEMETRY)) if session.accepted else None


def _serial(tls: ClientTls) -> int:
    assert tls.cert is not None
    return x509.load_pem_x509_certificate(tls.cert.read_bytes()).serial_number
