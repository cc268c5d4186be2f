"""Where the site CA, the device certificates and the revocation list live on disk.

A folder of `<username>.pem` (certificate, 0644) and `<username>.key` (the device's key,
0600, to be moved onto the device). The site CA is `site-ca.pem` and `site-ca.key` (0600),
with `site-ca.crl` for the listener's ``crlfile``: it exists from the start, because a
listener with a ``crlfile`` refuses every client whose CA has no revocation list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dockgate.gateway.provisioning.certs import (
    CA_DAYS,
    DEVICE_DAYS,
    CertificateError,
    Issued,
    SiteCa,
    certificate_serial,
    issue_client_certificate,
    new_site_ca,
    revocation_list,
)
from dockgate.gateway.provisioning.files import (
    PASSWORD_FILE_MODE,
    PUBLIC_FILE_MODE,
    fsync_dir,
    write_atomic,
)


@dataclass(frozen=True, slots=True)
class SiteCaFiles:
    """The site CA's certificate, key and revocation list files."""

    cert: Path
    key: Path
    crl: Path

    @classmethod
    def in_folder(cls, folder: Path) -> SiteCaFiles:
        return cls(folder / "site-ca.pem", folder / "site-ca.key", folder / "site-ca.crl")


def init_site_ca(folder: Path, common_name: str, days: int = CA_DAYS) -> SiteCaFiles:
    """Make a site CA in ``folder``; refuse to replace one (every device cert hangs on it)."""
    files = SiteCaFiles.in_folder(folder)
    existing = [p for p in (files.cert, files.key, files.crl) if p.exists()]
    if existing:
        raise CertificateError(f"{existing[0]} exists already: a site has one CA")
    folder.mkdir(parents=True, exist_ok=True)
    made = new_site_ca(common_name, days)
    write_atomic(files.key, made.key_pem, PASSWORD_FILE_MODE, owner=None)
    write_atomic(files.cert, made.cert_pem, PUBLIC_FILE_MODE, owner=None)
    ca = SiteCa.load(made.cert_pem, made.key_pem)
    write_atomic(files.crl, revocation_list(ca, None), PUBLIC_FILE_MODE, owner=None)
    return files


def load_site_ca(cert: Path, key: Path) -> SiteCa:
    """The CA from its files; CertificateError names the file it could not read."""
    try:
        cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return SiteCa.load(cert_pem, key_pem)


@dataclass(frozen=True, slots=True)
class DeviceCerts:
    """The folder of device certificates and keys."""

    folder: Path

    def cert_path(self, user: str) -> Path:
        return self.folder / f"{user}.pem"

    def key_path(self, user: str) -> Path:
        return self.folder / f"{user}.key"

    def has_cert(self, user: str) -> bool:
        return self.cert_path(user).is_file()

    def issue(self, ca: SiteCa, user: str, days: int = DEVICE_DAYS) -> Issued:
        """A new key and certificate for ``user`` (replacing any it had)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        issued = issue_client_certificate(ca, user, days)
        write_atomic(self.key_path(user), issued.key_pem, PASSWORD_FILE_MODE, owner=None)
        write_atomic(self.cert_path(user), issued.cert_pem, PUBLIC_FILE_MODE, owner=None)
        return issued

    def serial(self, user: str) -> int | None:
        """The serial of ``user``'s certificate, or None if it has none."""
        try:
            return certificate_serial(self.cert_path(user).read_bytes())
        except FileNotFoundError:
            return None

    def revoke(self, ca: SiteCa, crl: Path, user: str) -> int | None:
        """Add ``user``'s certificate to the CRL and delete its files; the serial, if any."""
        serial = self.serial(user)
        if serial is None:
            return None
        record_revoked(ca, crl, serial)
        for path in (self.key_path(user), self.cert_path(user)):
            path.unlink(missing_ok=True)
        fsync_dir(self.folder)  # the deletions, like the CRL, must survive a power cut
        return serial


def record_revoked(ca: SiteCa, crl: Path, serial: int) -> None:
    """Add ``serial`` to the CA's revocation list file (made if missing), re-signed."""
    try:
        existing: bytes | None = crl.read_bytes()
    except FileNotFoundError:
        existing = None
    write_atomic(crl, revocation_list(ca, existing, (serial,)), PUBLIC_FILE_MODE, owner=None)
