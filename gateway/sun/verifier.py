"""The SUN verifier: a scanned URL (or raw fields) in, a :class:`SunResult` out."""

from __future__ import annotations

from dataclasses import dataclass
from hmac import compare_digest

from dockgate.gateway.sun import reasons as R
from dockgate.gateway.sun.core import SunError, unhex, verify_message
from dockgate.gateway.sun.keys import TagKeys
from dockgate.gateway.sun.profiles import TagProfile
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
        self.modes = {name: ks.mode for name, ks in self.settings.key_sets.items()}
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
        self, url: str, *, reader_uid: bytes | None = None, profile: str | None = None
    ) -> SunResult:
        """Verify a scanned URL with the named profile, or the first profile it matches."""
        if not isinstance(url, str):
            return SunResult(valid=False, reason=R.BAD_INPUT)
        if profile is not None:
            prof = self.profiles.get(profile)
            found = prof.extract(url) if prof is not None else None
            if found is None:
                return SunResult(valid=False, reason=R.UNKNOWN_PROFILE, profile=profile)
        else:
            for prof in self.profiles.values():
                found = prof.extract(url)
                if found is not None:
                    break
            else:
                return SunResult(valid=False, reason=R.UNKNOWN_PROFILE)
        name, record = prof.name, found.record
        keys, mode = self._keys(prof.key_set)
        if keys is None:
            return SunResult(valid=False, reason=R.NO_KEY, profile=name, record=record)
        try:
            picc = None if found.picc_data is None else unhex(found.picc_data)
            enc = None if found.enc is None else unhex(found.enc, multiple=16)
            cmac = unhex(found.cmac, 8)
            plain_uid = None if found.uid is None else unhex(found.uid, 7)
            plain_ctr = None if found.ctr is None else int.from_bytes(unhex(found.ctr, 3), "big")
        except SunError as exc:
            return SunResult(valid=False, reason=exc.reason, profile=name, record=record)
        outcome = verify_message(
            keys,
            mode=mode,
            picc=picc,
            cmac=cmac,
            mac_input=found.mac_input,
            enc=enc,
            plain_uid=plain_uid,
            plain_ctr=plain_ctr,
            reader_uid=reader_uid,
        )
        result = _result(outcome, name, record)
        if result.valid and prof.record_binding == "uid":
            bound = self.records.get(record or "")
            if bound is None:
                return _fail(R.UNKNOWN_RECORD, result)
            if not compare_digest(bound, result.uid or ""):
                return _fail(R.RECORD_MISMATCH, result)
        return self._replay(result, outcome[1], outcome[2])

    def verify_fields(
        self,
        *,
        picc_data: str | None = None,
        cmac: str,
        enc_file_data: str | None = None,
        mac_input: str | bytes = b"",
        uid: str | None = None,
        read_ctr: str | None = None,
        mode: str | None = None,
        keys: TagKeys | None = None,
        key_set: str | None = None,
        reader_uid: bytes | None = None,
    ) -> SunResult:
        """Verify raw fields (hex text as scanned); ``keys`` overrides the configured key set."""
        if keys is None:
            keys, set_mode = self._keys(key_set)
            mode = mode or set_mode
            if keys is None:
                return SunResult(valid=False, reason=R.NO_KEY)
        try:
            picc = None if picc_data is None else unhex(picc_data)
            enc = None if enc_file_data is None else unhex(enc_file_data, multiple=16)
            mac = unhex(cmac, 8)
            plain_uid = None if uid is None else unhex(uid, 7)
            plain_ctr = None if read_ctr is None else int.from_bytes(unhex(read_ctr, 3), "big")
            if isinstance(mac_input, str):
                mac_input = mac_input.encode("ascii")
        except SunError as exc:
            return SunResult(valid=False, reason=exc.reason)
        except UnicodeEncodeError:
            return SunResult(valid=False, reason=R.BAD_INPUT)
        if picc is None and plain_uid is None:
            return SunResult(valid=False, reason=R.MISSING_FIELD)
        if picc is not None and plain_uid is not None and reader_uid is None:
            reader_uid = plain_uid  # counter-only PICC data: the UID as the reader reported it
        outcome = verify_message(
            keys,
            mode=mode,
            picc=picc,
            cmac=mac,
            mac_input=mac_input,
            enc=enc,
            plain_uid=plain_uid if picc is None else None,
            plain_ctr=plain_ctr,
            reader_uid=reader_uid,
        )
        return self._replay(_result(outcome), outcome[1], outcome[2])


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
