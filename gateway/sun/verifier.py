"""The SUN verifier: a scanned URL (or raw fields) in, a :class:`SunResult` out."""

from __future__ import annotations

from dataclasses import dataclass
from hmac import compare_digest
from typing import Required, TypedDict, Unpack

from dockgate.gateway.sun import reasons as R
from dockgate.gateway.sun.core import SunError, SunMessage, unhex, verify_message
from dockgate.gateway.sun.keys import TagKeys
from dockgate.gateway.sun.profiles import TagProfile, UrlFields
from dockgate.gateway.sun.replay import ReplayStore
from dockgate.gateway.sun.settings import SunSettings


@dataclass(frozen=True, slots=True)
class SunResult:
    """The verdict on one SUN message; ``reason`` is None exactly when ``valid``."""

    valid: bool
    uid: str | None = None
    read_ctr: int | None = None
    file_data: str | None = None
    reason: str | None = None
    profile: str | None = None
    record: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The JSON-ready form (the CLI's output line)."""
        return {
            "valid": self.valid,
            "uid": self.uid,
            "read_ctr": self.read_ctr,
            "file_data": self.file_data,
            "reason": self.reason,
        }


def _result(
    outcome: tuple[str | None, bytes | None, int | None, bytes | None],
    profile: str | None = None,
    record: str | None = None,
) -> SunResult:
    reason, uid, ctr, data = outcome
    return SunResult(
        valid=reason is None,
        uid=None if uid is None else uid.hex(),
        read_ctr=ctr,
        file_data=None if data is None else data.hex(),
        reason=reason,
        profile=profile,
        record=record,
    )


class SunVerifier:
    """Verifies SUN messages with configured profiles and key sets, and an optional replay store.

    The replay check runs only after the MAC is valid, so forged messages cannot move a
    counter. ``store=None`` remembers nothing.
    """

    def __init__(self, settings: SunSettings | None = None, store: ReplayStore | None = None):
        self.settings = settings or SunSettings()
        self.profiles: dict[str, TagProfile] = self.settings.load_profiles()
        self.key_sets: dict[str, TagKeys] = {
            name: ks.build() for name, ks in self.settings.key_sets.items()
        }
        self.modes: dict[str, str | None] = {
            name: ks.mode for name, ks in self.settings.key_sets.items()
        }
        self.records = self.settings.records
        self.store = store

    def __repr__(self) -> str:
        return f"SunVerifier(profiles={list(self.profiles)}, key_sets={list(self.key_sets)})"

    def _keys(self, name: str | None) -> tuple[TagKeys | None, str | None]:
        name = name or self.settings.default_key_set
        return self.key_sets.get(name), self.modes.get(name)

    def _replay(self, result: SunResult, uid: bytes | None, ctr: int | None) -> SunResult:
        if not result.valid or self.store is None:
            return result
        if uid is None or ctr is None:
            return _fail(R.NO_UID if uid is None else R.NO_COUNTER, result)
        if not self.store.accept(uid, ctr):
            return _fail(R.REPLAYED, result)
        return result

    def verify_url(
        self, url: object, *, reader_uid: bytes | None = None, profile: str | None = None
    ) -> SunResult:
        """Verify a scanned URL with the named profile, or the first profile it matches.

        ``url`` is whatever was scanned: anything but text is refused as ``bad_input``.
        """
        if not isinstance(url, str):
            return SunResult(valid=False, reason=R.BAD_INPUT)
        match = self._match(url, profile)
        if match is None:
            return SunResult(valid=False, reason=R.UNKNOWN_PROFILE, profile=profile)
        prof, found = match
        name, record = prof.name, found.record
        keys, mode = self._keys(prof.key_set)
        if keys is None:
            return SunResult(valid=False, reason=R.NO_KEY, profile=name, record=record)
        try:
            message = _url_message(found)
        except SunError as exc:
            return SunResult(valid=False, reason=exc.reason, profile=name, record=record)
        outcome = verify_message(keys, message, mode=mode, reader_uid=reader_uid)
        result = _result(outcome, name, record)
        if result.valid and prof.record_binding == "uid":
            bound = self.records.get(record or "")
            if bound is None:
                return _fail(R.UNKNOWN_RECORD, result)
            if not compare_digest(bound, result.uid or ""):
                return _fail(R.RECORD_MISMATCH, result)
        return self._replay(result, outcome[1], outcome[2])

    def _match(self, url: str, profile: str | None) -> tuple[TagProfile, UrlFields] | None:
        """The named profile (or else the first that fits) and the URL's fields in it."""
        if profile is not None:
            prof = self.profiles.get(profile)
            found = prof.extract(url) if prof is not None else None
            return (prof, found) if prof is not None and found is not None else None
        for prof in self.profiles.values():
            found = prof.extract(url)
            if found is not None:
                return prof, found
        return None

    def verify_fields(
        self,
        *,
        mode: str | None = None,
        keys: TagKeys | None = None,
        key_set: str | None = None,
        reader_uid: bytes | None = None,
        counter_only_uid: bytes | None = None,
        **fields: Unpack[SunFields],
    ) -> SunResult:
        """Verify raw fields (hex text as scanned); ``keys`` overrides the configured key set.

        ``reader_uid`` (or ``uid`` beside ``picc_data``) is the UID a reader saw: a mirrored
        UID must equal it. ``counter_only_uid`` is a UID known otherwise (the play check: the
        record's chip), used only when the PICC data mirrors the counter alone; a mirrored
        UID is left for the caller to compare after the MAC.
        """
        if keys is None:
            keys, set_mode = self._keys(key_set)
            mode = mode or set_mode
            if keys is None:
                return SunResult(valid=False, reason=R.NO_KEY)
        try:
            message = _fields_message(fields)
        except SunError as exc:
            return SunResult(valid=False, reason=exc.reason)
        except UnicodeEncodeError:
            return SunResult(valid=False, reason=R.BAD_INPUT)
        if message.picc is None and message.plain_uid is None:
            return SunResult(valid=False, reason=R.MISSING_FIELD)
        outside_uid = message.plain_uid is not None or counter_only_uid is not None
        if message.picc is not None and outside_uid:
            # with PICC data, ``uid`` is the one the reader reported
            reader_uid = message.plain_uid if reader_uid is None else reader_uid
            message = message._replace(plain_uid=counter_only_uid)
        outcome = verify_message(keys, message, mode=mode, reader_uid=reader_uid)
        return self._replay(_result(outcome), outcome[1], outcome[2])


class SunFields(TypedDict, total=False):
    """A SUN message's fields as scanned: hex text, and the exact text the MAC covers."""

    cmac: Required[str]
    picc_data: str | None
    enc_file_data: str | None
    mac_input: str | bytes
    uid: str | None
    read_ctr: str | None


def _counter(text: str | None) -> int | None:
    """A mirrored counter: 6 hex digits, most significant first."""
    return None if text is None else int.from_bytes(unhex(text, 3), "big")


def _url_message(found: UrlFields) -> SunMessage:
    """The message in a URL's fields; raises :class:`SunError` with the first bad field."""
    return SunMessage(
        picc=None if found.picc_data is None else unhex(found.picc_data),
        enc=None if found.enc is None else unhex(found.enc, multiple=16),
        cmac=unhex(found.cmac, 8),
        plain_uid=None if found.uid is None else unhex(found.uid, 7),
        plain_ctr=_counter(found.ctr),
        mac_input=found.mac_input,
    )


def _fields_message(fields: SunFields) -> SunMessage:
    """The message in raw fields; raises :class:`SunError` with the first bad field, or
    ``UnicodeEncodeError`` for a MAC input that is not ASCII."""
    picc, enc, uid = fields.get("picc_data"), fields.get("enc_file_data"), fields.get("uid")
    mac_input = fields.get("mac_input", b"")
    return SunMessage(
        picc=None if picc is None else unhex(picc),
        enc=None if enc is None else unhex(enc, multiple=16),
        cmac=unhex(fields["cmac"], 8),
        plain_uid=None if uid is None else unhex(uid, 7),
        plain_ctr=_counter(fields.get("read_ctr")),
        mac_input=mac_input.encode("ascii") if isinstance(mac_input, str) else mac_input,
    )


def _fail(reason: str, result: SunResult) -> SunResult:
    return SunResult(
        valid=False,
        uid=result.uid,
        read_ctr=result.read_ctr,
        file_data=None,
        reason=reason,
        profile=result.profile,
        record=result.record,
    )
