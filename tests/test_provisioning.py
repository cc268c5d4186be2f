"""The broker's account files, written by dockgate.gateway.provisioning and read by Mosquitto.

The password hashes are checked both ways against Mosquitto's own tools: an entry
`mosquitto_passwd` wrote verifies here and is kept byte for byte by every edit, and an entry
written here lets a real Mosquitto accept the password. File writes are atomic, locked, with
the modes and owners the broker needs; certificates chain to the site CA and the CRL is the
CA's.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from dockgate.gateway.protocol import DeviceKind, DeviceRef, acl_text, device_of_username, username
from dockgate.gateway.protocol.topics import STATION_ID_RE, VEHICLE_ID_RE
from dockgate.gateway.provisioning import (
    ITERATIONS,
    AccountError,
    BrokerFiles,
    CertificateError,
    DeviceCerts,
    PasswordFile,
    ReloadError,
    SiteCa,
    add_device,
    hash_password,
    init_site_ca,
    list_accounts,
    load_site_ca,
    readable_by,
    reload_broker,
    revoke_device,
    revoked_serials,
    rotate_device,
    verify_password,
    write_atomic,
)
from dockgate.sim.services.mosquitto import Mosquitto
from tests.support.broker_login import NOT_AUTHORIZED, login

VEHICLE = DeviceRef.vehicle(1, "SXB001")
STATION = DeviceRef.station(1, "ST-01")


@pytest.fixture
def site() -> Iterator[Path]:
    """A folder the broker's user can enter (pytest's tmp_path is 0700, root's own)."""
    folder = Path(tempfile.mkdtemp(prefix="dockgate-site-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def mosquitto_passwd(path: Path, user: str, password: str) -> None:
    """Add ``user`` to ``path`` with Mosquitto's own tool (creating the file if needed)."""
    create = [] if path.exists() else ["-c"]
    subprocess.run(
        ["mosquitto_passwd", *create, "-b", str(path), user, password], check=True, timeout=30
    )


def files_in(folder: Path) -> BrokerFiles:
    return BrokerFiles(folder / "dockgate.passwd", folder / "dockgate.acl")


# --- the hash format ---------------------------------------------------------------------


def test_mosquitto_passwd_entries_verify_here(site: Path) -> None:
    path = site / "passwd"
    mosquitto_passwd(path, "gateway", "correct horse")
    entry = path.read_text().strip().split(":", 1)[1]
    assert entry.startswith(f"$7${ITERATIONS}$")
    assert verify_password("correct horse", entry)
    assert not verify_password("correct horsE", entry)


def test_hash_format_is_mosquittos() -> None:
    encoded = hash_password("pw", salt=bytes(12))
    _, ident, iterations, salt, digest = encoded.split("$")
    assert (ident, int(iterations), salt) == ("7", ITERATIONS, "AAAAAAAAAAAAAAAA")
    assert len(digest) == 88  # 64 bytes of SHA-512, base64
    assert verify_password("pw", encoded) and not verify_password("pW", encoded)
    assert hash_password("pw") != hash_password("pw")  # a fresh salt each time


def test_real_mosquitto_accepts_a_password_hashed_here(site: Path) -> None:
    files = files_in(site)
    change = add_device(files, VEHICLE)
    assert change.password is not None
    broker = Mosquitto(users=files.password_file, acl=files.acl_file, persistence=False)
    with broker:
        assert login(broker, username(VEHICLE), change.password) == 0
        # Mosquitto 2.0 answers a wrong password "not authorized" (0x87), not 0x86
        assert login(broker, username(VEHICLE), change.password + "x") == NOT_AUTHORIZED
        assert login(broker, "vehicle-1-SXB999", change.password) == NOT_AUTHORIZED


# --- the password file, edited -------------------------------------------------------------


def test_edits_keep_every_other_line_byte_for_byte(site: Path) -> None:
    files = files_in(site)
    mosquitto_passwd(files.password_file, "gateway", "gw-secret")
    mosquitto_passwd(files.password_file, "metrics", "m-secret")
    before = files.password_file.read_text().splitlines()
    files.password_file.write_text("# site accounts\n" + "\n".join(before) + "\n\n")
    original = files.password_file.read_text().splitlines()

    add_device(files, VEHICLE)
    add_device(files, STATION)
    rotate_device(files, VEHICLE)
    revoke_device(files, STATION)

    lines = files.password_file.read_text().splitlines()
    assert lines[: len(original)] == original
    assert [line.split(":")[0] for line in lines[len(original) :]] == [username(VEHICLE)]


def test_set_replaces_in_place_and_drops_duplicates() -> None:
    table = PasswordFile.parse("a:1\nb:2\n# b:comment\nb:3\nc:4\n")
    table.set("b", "NEW")
    assert table.lines == ["a:1", "b:NEW", "# b:comment", "c:4"]
    assert table.usernames() == ["a", "b", "c"]
    assert table.remove("a") and not table.remove("a")
    assert table.render() == "b:NEW\n# b:comment\nc:4\n"


def test_list_never_shows_a_hash(site: Path) -> None:
    files = files_in(site)
    mosquitto_passwd(files.password_file, "gateway", "gw-secret")
    add_device(files, VEHICLE)
    files.password_file.write_text(files.password_file.read_text() + "stranger:$7$1$x$y\n")
    accounts = list_accounts(files.password_file, files.gateway_users)
    assert [(a.username, a.device, a.is_gateway) for a in accounts] == [
        ("gateway", None, True),
        (username(VEHICLE), VEHICLE, False),
        ("stranger", None, False),
    ]
    assert "$7$" not in repr(accounts)


def test_add_refuses_an_existing_account_and_rotate_or_revoke_a_missing_one(site: Path) -> None:
    files = files_in(site)
    add_device(files, VEHICLE)
    before = files.password_file.read_bytes()
    with pytest.raises(AccountError, match="exists already"):
        add_device(files, VEHICLE)
    with pytest.raises(AccountError, match="no account"):
        rotate_device(files, STATION)
    with pytest.raises(AccountError, match="no account"):
        revoke_device(files, STATION)
    assert files.password_file.read_bytes() == before


def test_a_change_repr_never_shows_the_password(site: Path) -> None:
    change = add_device(files_in(site), VEHICLE)
    assert change.password is not None and change.password not in repr(change)


def test_passwords_are_fresh_and_long(site: Path) -> None:
    files = files_in(site)
    first = add_device(files, VEHICLE).password
    second = rotate_device(files, VEHICLE).password
    assert first and second and first != second
    assert len(first) >= 32 and ":" not in first


# --- the ACL --------------------------------------------------------------------------------


def test_acl_is_regenerated_from_the_accounts(site: Path) -> None:
    files = BrokerFiles(site / "p", site / "a", gateway_users=("gateway", "gateway-2"))
    mosquitto_passwd(files.password_file, "gateway", "gw")
    mosquitto_passwd(files.password_file, "backup-tool", "bt")
    add_device(files, VEHICLE)
    change = add_device(files, STATION)
    assert files.acl_file.read_text() == acl_text([STATION, VEHICLE], ("gateway", "gateway-2"))
    assert change.acl_devices == 2
    assert change.without_rights == ("backup-tool",)  # no rights: Mosquitto denies by default
    revoke_device(files, VEHICLE)
    assert files.acl_file.read_text() == acl_text([STATION], ("gateway", "gateway-2"))


def test_a_device_name_cannot_be_a_gateway_account(site: Path) -> None:
    with pytest.raises(AccountError, match="device account"):
        BrokerFiles(site / "p", site / "a", gateway_users=(username(VEHICLE),))


@given(
    st.integers(1, 10**9 - 1),
    st.sampled_from(DeviceKind),
    st.data(),
)
def test_device_of_username_inverts_username(network: int, kind: DeviceKind, data) -> None:
    pattern = VEHICLE_ID_RE if kind is DeviceKind.VEHICLE else STATION_ID_RE
    device_id = data.draw(st.from_regex(pattern, fullmatch=True))
    device = DeviceRef(network, kind, device_id)
    assert device_of_username(username(device)) == device


@pytest.mark.parametrize(
    "name",
    [
        "gateway",
        "vehicle-01-SXB001",  # not the canonical network
        "vehicle-1-SXB",  # too short a serial
        "vehicle-0-SXB001",
        "vehicle--1-SXB001",
        "scooter-1-SXB001",
        "station-1--ST01",
        "vehicle-١-SXB001",  # a non-ASCII digit
        "",
    ],
)
def test_near_misses_are_not_devices(name: str) -> None:
    assert device_of_username(name) is None


def test_station_ids_with_dashes_round_trip() -> None:
    assert device_of_username("station-12-ST-01-A") == DeviceRef.station(12, "ST-01-A")


# --- atomic, locked writes -----------------------------------------------------------------


def test_modes_do_not_depend_on_the_umask(site: Path) -> None:
    old = os.umask(0)
    try:
        add_device(files_in(site), VEHICLE)
    finally:
        os.umask(old)
    files = files_in(site)
    assert stat.S_IMODE(files.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.acl_file.stat().st_mode) == 0o644
    assert sorted(p.name for p in site.iterdir()) == ["dockgate.acl", "dockgate.passwd"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another user")
def test_as_root_the_files_go_to_the_brokers_user(site: Path) -> None:
    files = files_in(site)
    broker = pwd.getpwnam("mosquitto")
    mosquitto_passwd(files.password_file, "gateway", "gw")  # root's, 0644: readable
    change = add_device(files, VEHICLE)
    for path in (files.password_file, files.acl_file):
        assert (path.stat().st_uid, path.stat().st_gid) == (broker.pw_uid, broker.pw_gid)
    assert change.unreadable == ()
    elsewhere = BrokerFiles(site / "p2", site / "a2", broker_user="no-such-user-here")
    add_device(elsewhere, VEHICLE)  # no such user: the writer keeps the files
    assert elsewhere.password_file.stat().st_uid == os.geteuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand files around")
def test_readable_by_follows_owner_group_and_mode(site: Path) -> None:
    path = site / "f"
    path.write_text("x")
    broker = pwd.getpwnam("mosquitto")
    for uid, gid, mode, readable in [
        (0, 0, 0o600, False),  # what `dockgate devices` must never leave behind
        (0, 0, 0o644, True),
        (0, broker.pw_gid, 0o640, True),
        (broker.pw_uid, broker.pw_gid, 0o600, True),
        (broker.pw_uid, 0, 0o044, False),
    ]:
        os.chown(path, uid, gid)
        path.chmod(mode)
        assert readable_by(path, "mosquitto") is readable, (uid, gid, oct(mode))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = site / "f"
    target.write_bytes(b"old")

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, b"new", 0o600)
    assert target.read_bytes() == b"old"
    assert [p.name for p in site.iterdir()] == ["f"]


def test_concurrent_adds_lose_no_device(site: Path) -> None:
    files = files_in(site)
    devices = [DeviceRef.vehicle(1, f"SXB{i:03d}") for i in range(24)]
    errors: list[BaseException] = []

    def add(device: DeviceRef) -> None:
        try:
            add_device(files, device)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = PasswordFile.parse(files.password_file.read_text()).usernames()
    assert sorted(names) == sorted(username(d) for d in devices)
    assert files.acl_file.read_text() == acl_text(sorted(devices, key=username))


# --- certificates --------------------------------------------------------------------------


def test_site_ca_issues_client_certificates_that_chain_to_it(tmp_path: Path) -> None:
    ca_files = init_site_ca(tmp_path / "ca", "test site CA")
    assert stat.S_IMODE(ca_files.key.stat().st_mode) == 0o600
    ca = load_site_ca(ca_files.cert, ca_files.key)
    certs = DeviceCerts(tmp_path / "certs")
    issued = certs.issue(ca, username(VEHICLE), days=30)
    cert = x509.load_pem_x509_certificate(certs.cert_path(username(VEHICLE)).read_bytes())
    cert.verify_directly_issued_by(ca.cert)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == username(VEHICLE)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=29) < lifetime <= dt.timedelta(days=30)
    assert cert.serial_number == issued.serial == certs.serial(username(VEHICLE))
    assert stat.S_IMODE(certs.key_path(username(VEHICLE)).stat().st_mode) == 0o600
    assert certs.has_cert(username(VEHICLE)) and not certs.has_cert(username(STATION))


def test_revoking_a_certificate_lists_it_in_the_cas_crl(tmp_path: Path) -> None:
    ca_files = init_site_ca(tmp_path, "test site CA")
    ca = load_site_ca(ca_files.cert, ca_files.key)
    assert revoked_serials(ca, ca_files.crl.read_bytes()) == set()
    certs = DeviceCerts(tmp_path / "certs")
    first = certs.issue(ca, username(VEHICLE)).serial
    second = certs.issue(ca, username(STATION)).serial
    assert certs.revoke(ca, ca_files.crl, username(VEHICLE)) == first
    assert certs.revoke(ca, ca_files.crl, username(STATION)) == second
    assert revoked_serials(ca, ca_files.crl.read_bytes()) == {first, second}
    assert not certs.has_cert(username(VEHICLE))
    assert not certs.key_path(username(VEHICLE)).exists()
    crl = x509.load_pem_x509_crl(ca_files.crl.read_bytes())
    assert crl.next_update_utc == ca.cert.not_valid_after_utc  # never locks the fleet out
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2


def test_a_crl_of_another_ca_and_a_mismatched_key_are_refused(tmp_path: Path) -> None:
    ours = init_site_ca(tmp_path / "ours", "ours")
    theirs = init_site_ca(tmp_path / "theirs", "theirs")
    with pytest.raises(CertificateError, match="does not belong"):
        load_site_ca(ours.cert, theirs.key)
    ca = load_site_ca(ours.cert, ours.key)
    with pytest.raises(CertificateError, match="not signed by this CA"):
        revoked_serials(ca, theirs.crl.read_bytes())
    with pytest.raises(CertificateError, match="exists already"):
        init_site_ca(tmp_path / "ours", "again")


def test_a_leaf_certificate_is_not_a_ca(tmp_path: Path) -> None:
    ca_files = init_site_ca(tmp_path, "ca")
    ca = load_site_ca(ca_files.cert, ca_files.key)
    leaf = DeviceCerts(tmp_path / "certs").issue(ca, "vehicle-1-SXB001")
    with pytest.raises(CertificateError, match="not a CA"):
        SiteCa.load(leaf.cert_pem, leaf.key_pem)


# --- reloading -----------------------------------------------------------------------------


def test_reload_signals_only_a_mosquitto() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    comm = Path(f"/proc/{sleeper.pid}/comm")
    while comm.read_text().strip() != "sleep":  # until the fork has exec'd
        time.sleep(0.01)
    try:
        with pytest.raises(ReloadError, match="'sleep', not mosquitto"):
            reload_broker(sleeper.pid)
        assert sleeper.poll() is None  # not signalled (SIGHUP would have ended it)
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(ReloadError, match="no process"):
        reload_broker(sleeper.pid)
