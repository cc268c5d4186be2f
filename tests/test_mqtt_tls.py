"""The MQTT driver over TLS against Mosquitto's TLS listener, with a self-signed CA made here.

A driver that trusts the CA connects, sends a command and gets its ack from a device on the
same TLS listener; one that trusts another CA is refused cleanly (a named error that says
why, no hang), and so is a plain-TCP client.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from dockgate.drivers.mqtt import CommandStatus, MqttDriver, MqttError, MqttSettings
from dockgate.gateway.protocol import DeviceRef, SetMaxSpeed
from dockgate.sim.services.mosquitto import Mosquitto, TlsFiles
from tests.support.mqtt import ScriptedDevice

pytestmark = pytest.mark.timeout(60)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("dockgate test broker"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_pem(path: Path, obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            obj.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
    return path


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path, Path]]:
    """A TLS-only broker; yields it, its CA file and the file of an unrelated CA."""
    ca_key, ca = make_ca("dockgate test CA")
    key, cert = make_server_cert(ca_key, ca)
    _, rogue = make_ca("someone else's CA")
    files = TlsFiles(
        write_pem(tmp_path / "ca.pem", ca),
        write_pem(tmp_path / "server.pem", cert),
        write_pem(tmp_path / "server.key", key),
    )
    broker = Mosquitto(tls=files, persistence=False)
    broker.start()
    try:
        yield broker, files.cafile, write_pem(tmp_path / "rogue-ca.pem", rogue)
    finally:
        broker.cleanup()


def settings(broker: Mosquitto, **kwargs: object) -> MqttSettings:
    return MqttSettings(
        host=broker.host,
        port=broker.port,
        client_id=f"gw-tls-{time.monotonic_ns()}",
        command_timeout=1.0,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_driver_over_tls_sends_commands_and_gets_acks(tls_broker) -> None:
    broker, ca_file, _ = tls_broker
    device = ScriptedDevice(broker, DeviceRef.vehicle(1, "SXB001"))
    try:
        async with MqttDriver(settings(broker, tls=True, ca_file=ca_file)) as driver:
            outcome = await driver.send_command(device.device, SetMaxSpeed(max_speed=15))
            assert outcome.status is CommandStatus.ACCEPTED, outcome
            assert driver.stats.connected and driver.stats.connect_failures == 0
        assert len(device.executed) == 1
    finally:
        device.close()


async def test_driver_with_the_wrong_ca_is_refused_cleanly(tls_broker) -> None:
    broker, _, rogue_ca = tls_broker
    t0 = time.monotonic()
    driver = MqttDriver(settings(broker, tls=True, ca_file=rogue_ca, connect_timeout=1.5))
    with pytest.raises(MqttError, match="certificate verify failed"):
        await driver.__aenter__()
    assert time.monotonic() - t0 < 5  # refused within the connect timeout, never a hang
    assert driver.stats.connect_failures >= 1 and not driver.stats.connected


def test_plain_tcp_client_gets_nothing_from_a_tls_listener(tls_broker) -> None:
    broker, _, _ = tls_broker
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="plain", protocol=paho.MQTTv5)
    connected: list[object] = []
    client.on_connect = lambda *a: connected.append(a)
    try:
        client.connect(broker.host, broker.port, keepalive=5)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not connected:
            if client.loop(timeout=0.1) != paho.MQTT_ERR_SUCCESS:
                break
    except OSError:
        pass
    finally:
        client.disconnect()
    assert not connected  # no CONNACK without TLS
