"""Device accounts on the site broker: add, rotate, revoke and list them.

The password file is the list of accounts; the ACL file is regenerated from it on every
change (gateway accounts read and write the whole tree, each device only its own topics, see
:func:`dockgate.gateway.protocol.acl_text`). Each change is one locked read-edit-write of
both files, written in the order that fails safe: a new device's ACL before its password (a
crash in between leaves an account that cannot log in), a revoked device's password before
its ACL (a crash in between leaves rights nobody can log in to use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dockgate.gateway.protocol import DeviceRef, acl_text, device_of_username, username
from dockgate.gateway.provisioning.files import (
    BROKER_USER,
    PASSWORD_FILE_MODE,
    PUBLIC_FILE_MODE,
    locked,
    read_text,
    readable_by,
    write_atomic,
)
from dockgate.gateway.provisioning.passwords import (
    PasswordFile,
    check_username,
    hash_password,
    new_password,
)


class AccountError(ValueError):
    """A change that does not apply: the account exists already, or does not exist."""


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """The broker's account files, the accounts that keep the whole topic tree, and the user
    the broker runs as (who owns the files when root writes them)."""

    password_file: Path
    acl_file: Path
    gateway_users: tuple[str, ...] = ("gateway",)
    broker_user: str = BROKER_USER

    def __post_init__(self) -> None:
        for name in self.gateway_users:
            check_username(name)
            if device_of_username(name) is not None:
                raise AccountError(f"{name} is a device account, not a gateway account")


@dataclass(frozen=True, slots=True)
class Account:
    """One account of the password file: a device, a gateway, or something else."""

    username: str
    device: DeviceRef | None
    is_gateway: bool


@dataclass(frozen=True, slots=True)
class Change:
    """What a change did; ``password`` is the new secret, to be shown once and never logged."""

    username: str
    password: str | None = field(repr=False)
    acl_devices: int
    without_rights: tuple[str, ...]  # accounts that are neither a device nor a gateway
    unreadable: tuple[Path, ...]  # files the broker's user cannot read (it would not start)


def list_accounts(password_file: Path, gateway_users: tuple[str, ...]) -> list[Account]:
    """The accounts in the password file, in file order (never a hash)."""
    accounts = PasswordFile.parse(read_text(password_file)).usernames()
    return [Account(name, device_of_username(name), name in gateway_users) for name in accounts]


def add_device(files: BrokerFiles, device: DeviceRef) -> Change:
    """A new account for ``device`` with a fresh password; AccountError if it exists."""
    user = username(device)
    with locked(files.password_file.parent):
        table = PasswordFile.parse(read_text(files.password_file))
        if user in table:
            raise AccountError(f"{user} exists already (use rotate for a new password)")
        password = new_password()
        table.set(user, hash_password(password))
        acl_devices, without = _write_acl(files, table)
        _write_passwords(files, table)
    return Change(user, password, acl_devices, without, _unreadable(files))


def rotate_device(files: BrokerFiles, device: DeviceRef) -> Change:
    """A fresh password for an existing device; the old one works until the broker reloads."""
    user = username(device)
    with locked(files.password_file.parent):
        table = PasswordFile.parse(read_text(files.password_file))
        if user not in table:
            raise AccountError(f"no account {user} in {files.password_file}")
        password = new_password()
        table.set(user, hash_password(password))
        _write_passwords(files, table)
        acl_devices, without = _write_acl(files, table)
    return Change(user, password, acl_devices, without, _unreadable(files))


def revoke_device(files: BrokerFiles, device: DeviceRef, *, must_exist: bool = True) -> Change:
    """Remove ``device``'s account and its ACL rights (effective when the broker reloads)."""
    user = username(device)
    with locked(files.password_file.parent):
        table = PasswordFile.parse(read_text(files.password_file))
        if not table.remove(user) and must_exist:
            raise AccountError(f"no account {user} in {files.password_file}")
        _write_passwords(files, table)
        acl_devices, without = _write_acl(files, table)
    return Change(user, None, acl_devices, without, _unreadable(files))


def _write_passwords(files: BrokerFiles, table: PasswordFile) -> None:
    data = table.render().encode("utf-8")
    write_atomic(files.password_file, data, PASSWORD_FILE_MODE, owner=files.broker_user)


def _unreadable(files: BrokerFiles) -> tuple[Path, ...]:
    paths = (files.password_file, files.acl_file)
    return tuple(p for p in paths if not readable_by(p, files.broker_user))


def _write_acl(files: BrokerFiles, table: PasswordFile) -> tuple[int, tuple[str, ...]]:
    """Regenerate the ACL from the accounts; the device count and the accounts left out."""
    devices: list[DeviceRef] = []
    without: list[str] = []
    for name in table.usernames():
        device = device_of_username(name)
        if device is not None:
            devices.append(device)
        elif name not in files.gateway_users:
            without.append(name)
    devices.sort(key=username)
    text = acl_text(devices, files.gateway_users)
    write_atomic(files.acl_file, text.encode("utf-8"), PUBLIC_FILE_MODE, owner=files.broker_user)
    return len(devices), tuple(without)
