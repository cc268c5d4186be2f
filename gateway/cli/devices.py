"""`dockgate devices`: device accounts on the site's Mosquitto (passwords, ACL, certificates).

A new or rotated password goes to stdout alone (or to a 0600 file with ``--secret-out``), so
``PW=$(dockgate devices add ...)`` works; everything else goes to stderr. Secrets and hashes
are never printed anywhere else. Bad device ids exit 2, refused changes exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from dockgate.gateway.cli.options import with_options
from dockgate.gateway.protocol import DeviceKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from dockgate.gateway.protocol import DeviceRef
    from dockgate.gateway.provisioning import BrokerFiles, Change, DeviceCerts, SiteCa

app = typer.Typer(
    help="Device accounts on the site's Mosquitto: add, list, rotate, revoke.",
    no_args_is_help=True,
)
ca_app = typer.Typer(
    help="The site CA that signs device client certificates.", no_args_is_help=True
)
app.add_typer(ca_app, name="ca")

PASSWORD_FILE = Path("/etc/mosquitto/dockgate.passwd")  # as config/mosquitto/mosquitto.conf
ACL_FILE = Path("/etc/mosquitto/dockgate.acl")
CERT_DIR_NAME = "dockgate-certs"  # next to the password file unless --out/--cert-dir says


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _say(message: str) -> None:
    typer.echo(message, err=True)


@dataclass(frozen=True, kw_only=True)
class FileOptions:
    """Where the broker's files are, and who the gateway accounts are."""

    password_file: Annotated[
        Path, typer.Option("--password-file", help="Mosquitto password_file.")
    ] = PASSWORD_FILE
    gateway_user: Annotated[
        list[str] | None,
        typer.Option(
            help="Account with readwrite on the whole tree (repeatable; default: gateway)."
        ),
    ] = None
    cert_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "--cert-dir",
            help=f"Folder of device certificates (default: {CERT_DIR_NAME}/ by the password file).",
        ),
    ] = None

    def gateway_users(self) -> tuple[str, ...]:
        return tuple(self.gateway_user) if self.gateway_user else ("gateway",)

    def certs(self) -> DeviceCerts:
        from dockgate.gateway.provisioning import DeviceCerts

        return DeviceCerts(self.cert_dir or self.password_file.parent / CERT_DIR_NAME)


@dataclass(frozen=True, kw_only=True)
class ChangeOptions(FileOptions):
    """A change to one device's account."""

    kind: Annotated[DeviceKind, typer.Option(help="station, vehicle or reader.")]
    network: Annotated[int, typer.Option(help="Network id in the topic tree.")]
    device_id: Annotated[str, typer.Option("--id", help="Station id, vehicle serial or reader id.")]
    acl_file: Annotated[Path, typer.Option("--acl-file", help="Mosquitto acl_file.")] = ACL_FILE
    broker_user: Annotated[
        str, typer.Option(help="The user Mosquitto runs as: owns the files root writes.")
    ] = "mosquitto"
    ca_cert: Annotated[Path | None, typer.Option(help="Site CA certificate (PEM).")] = None
    ca_key: Annotated[Path | None, typer.Option(help="Site CA private key (PEM).")] = None
    reload_pid: Annotated[
        int | None, typer.Option(help="Send SIGHUP to this mosquitto pid after the change.")
    ] = None

    def device(self) -> DeviceRef:
        """The device, or exit 2 naming the id pattern it breaks."""
        from dockgate.gateway.protocol import DeviceRef, TopicError
        from dockgate.gateway.protocol.topics import STATION_ID_RE, VEHICLE_ID_RE

        pattern = (VEHICLE_ID_RE if self.kind is DeviceKind.VEHICLE else STATION_ID_RE).pattern
        try:
            return DeviceRef(self.network, self.kind, self.device_id)
        except TopicError as exc:
            expected = f"a {self.kind.value} id matches {pattern}, a network is 1 to 999999999"
            raise typer.BadParameter(f"{exc} ({expected})", param_hint="--network/--id") from None

    def files(self) -> BrokerFiles:
        from dockgate.gateway.provisioning import AccountError, BrokerFiles, PasswordFileError

        try:
            return BrokerFiles(
                self.password_file, self.acl_file, self.gateway_users(), self.broker_user
            )
        except (AccountError, PasswordFileError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--gateway-user") from None

    def site_ca(self, needed: bool) -> SiteCa | None:
        """The CA from --ca-cert/--ca-key when ``needed`` (exit 2 without them)."""
        from dockgate.gateway.provisioning import CertificateError, load_site_ca

        if not needed:
            return None
        if self.ca_cert is None or self.ca_key is None:
            raise typer.BadParameter("needs --ca-cert and --ca-key", param_hint="--cert/--crl")
        try:
            return load_site_ca(self.ca_cert, self.ca_key)
        except CertificateError as exc:
            _fail(str(exc))

    def check_crl(self, ca: SiteCa | None, crl: Path | None) -> None:
        """Refuse a CRL the CA did not sign before anything changes (exit 1)."""
        from dockgate.gateway.provisioning import CertificateError, revoked_serials

        if ca is None or crl is None or not crl.exists():
            return
        try:
            revoked_serials(ca, crl.read_bytes())
        except (CertificateError, OSError) as exc:
            _fail(f"{crl}: {exc}")


@dataclass(frozen=True, kw_only=True)
class IssueOptions(ChangeOptions):
    """A change that makes a new secret (add, rotate)."""

    secret_out: Annotated[
        Path | None,
        typer.Option(help="Write the new password to this file (mode 0600), not to stdout."),
    ] = None
    cert: Annotated[
        bool, typer.Option("--cert", help="Also issue a client certificate (CN = username).")
    ] = False
    days: Annotated[int, typer.Option(min=1, max=825, help="Certificate validity, days.")] = 90

    def check_secret_out(self) -> None:
        """Refuse a --secret-out nobody could write before the password changes (exit 2)."""
        if self.secret_out is not None and not self.secret_out.parent.is_dir():
            raise typer.BadParameter(
                f"no folder {self.secret_out.parent}", param_hint="--secret-out"
            )


@dataclass(frozen=True, kw_only=True)
class RotateOptions(IssueOptions):
    crl: Annotated[
        Path | None,
        typer.Option(help="With --cert: add the previous certificate to this CRL (site-ca.crl)."),
    ] = None


@dataclass(frozen=True, kw_only=True)
class RevokeOptions(ChangeOptions):
    crl: Annotated[
        Path | None,
        typer.Option(help="Add the device's certificate to this CRL (needs --ca-cert/--ca-key)."),
    ] = None


@app.command()
@with_options(IssueOptions)
def add(opts: IssueOptions) -> None:
    """Create a device's account with a fresh password (printed once) and regenerate the ACL."""
    from dockgate.gateway.provisioning import add_device

    device, files = opts.device(), opts.files()
    opts.check_secret_out()
    ca = opts.site_ca(opts.cert)
    change = _apply(lambda: add_device(files, device))
    _summary(f"added {change.username} to {files.password_file}", change, files)
    _hand_over_secret(change, opts.secret_out)
    if ca is not None:
        _issue(opts.certs(), ca, change.username, opts.days)
    _reload(opts.reload_pid)


@app.command()
@with_options(RotateOptions)
def rotate(opts: RotateOptions) -> None:
    """Give a device a new password; the old one stops working when the broker reloads."""
    from dockgate.gateway.provisioning import rotate_device

    device, files = opts.device(), opts.files()
    opts.check_secret_out()
    if opts.crl is not None and not opts.cert:
        raise typer.BadParameter("--crl goes with --cert (it revokes the replaced certificate)")
    ca = opts.site_ca(opts.cert)
    opts.check_crl(ca, opts.crl)
    change = _apply(lambda: rotate_device(files, device))
    _summary(f"new password for {change.username} in {files.password_file}", change, files)
    _hand_over_secret(change, opts.secret_out)
    if ca is not None:
        certs = opts.certs()
        previous = certs.serial(change.username)
        _issue(certs, ca, change.username, opts.days)
        if previous is not None:
            _retire(certs, ca, opts.crl, previous)
    _reload(opts.reload_pid)


@app.command()
@with_options(RevokeOptions)
def revoke(opts: RevokeOptions) -> None:
    """Remove a device's account and its ACL rights (and its certificate, with --crl)."""
    from dockgate.gateway.provisioning import revoke_device

    device, files, certs = opts.device(), opts.files(), opts.certs()
    ca = opts.site_ca(opts.crl is not None)
    opts.check_crl(ca, opts.crl)
    user_has_cert = certs.has_cert(_username(device))
    change = _apply(lambda: revoke_device(files, device, must_exist=not user_has_cert))
    _summary(f"revoked {change.username} in {files.password_file}", change, files)
    if user_has_cert:
        _revoke_cert(certs, ca, opts.crl, change.username)
    _reload(opts.reload_pid)


@app.command("list")
@with_options(FileOptions)
def list_(opts: FileOptions) -> None:
    """The accounts in the password file: kind, network, id, certificate (no secrets)."""
    from dockgate.gateway.provisioning import list_accounts

    certs = opts.certs()
    if not opts.password_file.is_file():
        _fail(f"no password file at {opts.password_file} (--password-file)")
    try:
        accounts = list_accounts(opts.password_file, opts.gateway_users())
    except OSError as exc:
        _fail(f"cannot read {opts.password_file}: {exc.strerror}")
    typer.echo(f"{'USERNAME':32} {'KIND':8} {'NETWORK':>9} {'ID':32} CERT")
    for acc in accounts:
        kind = acc.device.kind.value if acc.device else "gateway" if acc.is_gateway else "other"
        network = str(acc.device.network) if acc.device else "-"
        device_id = acc.device.device_id if acc.device else "-"
        cert = "yes" if certs.has_cert(acc.username) else "no"
        typer.echo(f"{acc.username:32} {kind:8} {network:>9} {device_id:32} {cert}")


@ca_app.command("init")
def ca_init(
    out: Path = typer.Option(
        ..., "--out", help="Folder for site-ca.pem, site-ca.key, site-ca.crl."
    ),
    name: str = typer.Option("dockgate site CA", help="The CA's common name."),
    days: int = typer.Option(3650, min=1, help="CA validity, days."),
) -> None:
    """Make a site CA (refuses to replace one): it signs device certificates and the CRL."""
    from dockgate.gateway.provisioning import CertificateError, init_site_ca

    try:
        made = init_site_ca(out, name, days)
    except CertificateError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write {exc.filename}: {exc.strerror}")
    _say(f"site CA: {made.cert} (key {made.key}, mode 0600: keep it off the broker if you can)")
    _say(f"revocation list: {made.crl}")
    _say(
        "broker TLS listener: cafile "
        f"{made.cert}, crlfile {made.crl}, require_certificate true, use_identity_as_username true"
    )


def _username(device: DeviceRef) -> str:
    from dockgate.gateway.protocol import username

    return username(device)


def _apply(change: Callable[[], Change]) -> Change:
    """Run a change; a refused one exits 1 with its reason, an I/O error with the file."""
    from dockgate.gateway.provisioning import AccountError

    try:
        return change()
    except AccountError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"nothing changed: {exc.filename}: {exc.strerror}")


def _summary(what: str, change: Change, files: BrokerFiles) -> None:
    _say(what)
    _say(f"regenerated {files.acl_file}: {change.acl_devices} device(s)")
    for name in change.without_rights:
        _say(f"warning: account {name} is neither a device nor a --gateway-user: no ACL rights")
    for path in change.unreadable:
        _say(f"warning: {files.broker_user} cannot read {path}: the broker will not load it")


def _hand_over_secret(change: Change, secret_out: Path | None) -> None:
    """The new password, once: to stdout, or to a 0600 file."""
    from dockgate.gateway.provisioning import write_atomic

    if change.password is None:
        return
    if secret_out is None:
        typer.echo(change.password)
        return
    try:
        write_atomic(secret_out, f"{change.password}\n".encode(), 0o600, owner=None)
    except OSError as exc:
        _fail(
            f"{change.username} has a new password but {secret_out} could not be written "
            f"({exc.strerror}): run `dockgate devices rotate` for another one"
        )
    _say(f"password of {change.username} written to {secret_out} (mode 0600)")


def _issue(certs: DeviceCerts, ca: SiteCa, user: str, days: int) -> None:
    try:
        issued = certs.issue(ca, user, days)
    except OSError as exc:
        _fail(
            f"{user}'s password is changed, but no certificate was written ({exc.filename}: "
            f"{exc.strerror}): run `dockgate devices rotate --cert` once it can be"
        )
    _say(
        f"certificate {certs.cert_path(user)} (serial {issued.serial:x}, until "
        f"{issued.not_after:%Y-%m-%d}); key {certs.key_path(user)}: move it onto the device"
    )


def _retire(certs: DeviceCerts, ca: SiteCa, crl: Path | None, serial: int) -> None:
    """The certificate a rotation replaced: into the CRL, or a warning that it still works."""
    if crl is None:
        _say(f"warning: the previous certificate (serial {serial:x}) stays valid until it expires")
        return
    from dockgate.gateway.provisioning import record_revoked

    try:
        record_revoked(ca, crl, serial)
    except OSError as exc:
        _fail(f"the previous certificate (serial {serial:x}) is not in {crl}: {exc.strerror}")
    _say(f"previous certificate (serial {serial:x}) added to {crl}")
    _restart_hint()


def _revoke_cert(certs: DeviceCerts, ca: SiteCa | None, crl: Path | None, user: str) -> None:
    if ca is None or crl is None:
        _say(
            f"warning: {certs.cert_path(user)} stays valid until it expires (the ACL gives it no "
            "rights after the reload); pass --crl with --ca-cert/--ca-key to revoke it"
        )
        return
    try:
        serial = certs.revoke(ca, crl, user)
    except OSError as exc:
        _fail(f"{user}'s certificate is not revoked ({exc.filename}: {exc.strerror})")
    _say(f"certificate of {user} (serial {serial:x}) added to {crl}; its files deleted")
    _restart_hint()


def _restart_hint() -> None:
    from dockgate.gateway.provisioning import RESTART_HINT

    _say(f"Mosquitto reads the CRL only when it starts: {RESTART_HINT}")


def _reload(pid: int | None) -> None:
    """SIGHUP the broker if asked; otherwise tell the operator how."""
    from dockgate.gateway.provisioning import RELOAD_HINT, ReloadError, reload_broker

    if pid is None:
        _say(f"reload the broker to apply it: {RELOAD_HINT}")
        return
    try:
        reload_broker(pid)
    except ReloadError as exc:
        _fail(f"{exc}; the files are written, reload by hand: {RELOAD_HINT}")
    _say(f"sent SIGHUP to mosquitto (pid {pid}): it re-reads the password and ACL files")
