"""A site CA, device client certificates and the CA's revocation list, as PEM bytes.

For a TLS listener with ``require_certificate true`` and ``use_identity_as_username true``:
the broker takes the certificate's common name as the username, so a device certificate's
CN is its account name and the same ACL applies. Keys are EC P-256; certificates are short
lived (renewed with `dockgate devices rotate --cert`), the CA long lived.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_CLOCK_SKEW = dt.timedelta(minutes=5)  # a device whose clock lags a little still accepts it
CA_DAYS = 3650
DEVICE_DAYS = 90

_SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class CertificateError(ValueError):
    """A CA, certificate or revocation list that cannot be used (the message says why)."""


@dataclass(frozen=True, slots=True)
class SiteCa:
    """The site CA's certificate and key, checked to belong together."""

    cert: x509.Certificate
    key: _SigningKey

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> SiteCa:
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:  # never echo key material
            raise CertificateError("cannot read the CA certificate or key (PEM)") from exc
        if not isinstance(key, _SigningKey):
            raise CertificateError("the CA key must be an EC or RSA key")
        if cert.public_key() != key.public_key():
            raise CertificateError("the CA key does not belong to the CA certificate")
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise CertificateError("the CA certificate is not a CA (basicConstraints)")
        return cls(cert, key)


@dataclass(frozen=True, slots=True)
class Issued:
    """A new key and its certificate (PEM), and the certificate's serial number."""

    key_pem: bytes
    cert_pem: bytes
    serial: int
    not_after: dt.datetime


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def new_site_ca(common_name: str, days: int = CA_DAYS) -> Issued:
    """A self-signed CA that may sign device certificates and revocation lists."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return Issued(_key_pem(key), pem, cert.serial_number, not_after)


def issue_client_certificate(ca: SiteCa, common_name: str, days: int = DEVICE_DAYS) -> Issued:
    """A key and a TLS client certificate with CN ``common_name``, never outliving the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return Issued(_key_pem(key), pem, cert.serial_number, not_after)


def _authority_key_id(ca: SiteCa) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())


def certificate_serial(cert_pem: bytes) -> int:
    """The serial number of a PEM certificate."""
    try:
        return x509.load_pem_x509_certificate(cert_pem).serial_number
    except ValueError as exc:
        raise CertificateError("cannot read the certificate (PEM)") from exc


def revocation_list(ca: SiteCa, existing_pem: bytes | None, revoke: tuple[int, ...] = ()) -> bytes:
    """The CA's CRL: the serials of ``existing_pem`` plus ``revoke``, signed anew.

    Valid until the CA itself expires: Mosquitto refuses every client certificate once its
    CRL is past its next update, so a short-lived CRL would lock the whole fleet out.
    """
    now = dt.datetime.now(dt.UTC)
    revoked: dict[int, dt.datetime] = {}
    number = 0
    if existing_pem is not None:
        old = _load_crl(ca, existing_pem)
        revoked = {r.serial_number: r.revocation_date_utc for r in old}
        number = _crl_number(old) + 1
    for serial in revoke:
        revoked.setdefault(serial, now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - _CLOCK_SKEW)
        .next_update(ca.cert.not_valid_after_utc)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_authority_key_id(ca), critical=False)
    )
    for serial, when in sorted(revoked.items()):
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ca.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


def revoked_serials(ca: SiteCa, crl_pem: bytes) -> set[int]:
    """The serial numbers a CRL of this CA revokes."""
    return {r.serial_number for r in _load_crl(ca, crl_pem)}


def _load_crl(ca: SiteCa, pem: bytes) -> x509.CertificateRevocationList:
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError as exc:
        raise CertificateError("cannot read the revocation list (PEM)") from exc
    try:
        valid = crl.issuer == ca.cert.subject and crl.is_signature_valid(ca.key.public_key())
    except (InvalidSignature, TypeError):
        valid = False
    if not valid:
        raise CertificateError("the revocation list was not signed by this CA")
    return crl


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0
