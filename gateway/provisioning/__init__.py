"""Device accounts on the site's Mosquitto: password file, ACL and client certificates.

The shell behind `dockgate devices`: each change is a locked, atomic rewrite of the broker's
files in Mosquitto's own formats (no `mosquitto_passwd` needed), which the broker applies
when it re-reads them (SIGHUP). See docs/mqtt-protocol.md, "Provisioning".
"""

from dockgate.gateway.provisioning.accounts import (
    Account,
    AccountError,
    BrokerFiles,
    Change,
    add_device,
    list_accounts,
    revoke_device,
    rotate_device,
)
from dockgate.gateway.provisioning.cert_files import (
    DeviceCerts,
    SiteCaFiles,
    init_site_ca,
    load_site_ca,
    record_revoked,
)
from dockgate.gateway.provisioning.certs import (
    CA_DAYS,
    DEVICE_DAYS,
    CertificateError,
    Issued,
    SiteCa,
    revoked_serials,
)
from dockgate.gateway.provisioning.files import readable_by, write_atomic
from dockgate.gateway.provisioning.passwords import (
    ITERATIONS,
    PasswordFile,
    PasswordFileError,
    hash_password,
    new_password,
    verify_password,
)
from dockgate.gateway.provisioning.reload import (
    RELOAD_HINT,
    RESTART_HINT,
    ReloadError,
    reload_broker,
)

__all__ = [
    "CA_DAYS",
    "DEVICE_DAYS",
    "ITERATIONS",
    "RELOAD_HINT",
    "RESTART_HINT",
    "Account",
    "AccountError",
    "BrokerFiles",
    "CertificateError",
    "Change",
    "DeviceCerts",
    "Issued",
    "PasswordFile",
    "PasswordFileError",
    "ReloadError",
    "SiteCa",
    "SiteCaFiles",
    "add_device",
    "hash_password",
    "init_site_ca",
    "list_accounts",
    "load_site_ca",
    "new_password",
    "readable_by",
    "record_revoked",
    "reload_broker",
    "revoke_device",
    "revoked_serials",
    "rotate_device",
    "verify_password",
    "write_atomic",
]
