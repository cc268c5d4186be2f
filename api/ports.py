"""What the API needs from the rest of the gateway, as small interfaces injected at start-up.

The daemon wires the MQTT driver, the SUN verifier and the rules loader in here; tests and the
CLI can wire other implementations. Each real implementation sits behind exactly one adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from dockgate.gateway.sun import SunVerifier
from dockgate.gateway.sun import reasons as sun_reasons

CommandStatus = Literal["acked", "failed", "timeout"]


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What became of a command on the wire."""

    status: CommandStatus
    detail: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class CommandSender(Protocol):
    """Sends one journaled command to a device and waits for its outcome."""

    async def send_command(
        self,
        target_kind: str,
        target_id: int,
        command: str,
        args: dict[str, Any],
        *,
        idempotency_key: str,
    ) -> CommandOutcome: ...


class FlowCommandSender:
    """The adapter to the ride flow (``dockgate.gateway.flow.RideFlow``) and its MQTT port: the API
    journals the command, the flow sends it to the spot's station or the vehicle (``cmd_id``
    derived from the idempotency key) and the device's answer becomes the outcome.

    ``create_app(store, outbox, tokens=..., command_sender=FlowCommandSender(flow))``.
    """

    def __init__(self, flow: Any) -> None:
        self.flow = flow

    async def send_command(
        self,
        target_kind: str,
        target_id: int,
        command: str,
        args: dict[str, Any],
        *,
        idempotency_key: str,
    ) -> CommandOutcome:
        settled = await self.flow.send_api_command(
            target_kind, target_id, command, args, idempotency_key
        )
        return CommandOutcome(settled.state, settled.reason, {"device_status": settled.status})


@dataclass(frozen=True, slots=True)
class PlayCheck:
    """The verdict on a dynamic play ``<id_record>@<picc_data>:<cmac>``."""

    valid: bool
    uid: str | None = None
    read_ctr: int | None = None
    reason: str | None = None


class PlayVerifier(Protocol):
    """Checks the SUN message of a dynamic record (key looked up by the implementation).

    ``picc_data`` is 32 hex characters (AES) or 48 (LRP). ``consume=True`` stores the tag's
    counter, so the same scan is refused next time; ``consume=False`` is a dry check: the MAC
    is verified and the counter must be above the stored one, and nothing is stored. ``uid``
    is the record's chip (14 hex) when known: the UID of PICC data that mirrors only the
    counter (a mirrored UID is the caller's to compare with it).
    """

    def verify_play(
        self,
        record_id: int,
        picc_data: str,
        cmac: str,
        *,
        consume: bool = True,
        uid: str | None = None,
    ) -> PlayCheck: ...


@dataclass(frozen=True, slots=True)
class BundleProblem:
    """One problem in a bundle: where (keys and list positions from the bundle's root, e.g.
    ``("speed_zones", "2", "max_speed")``; empty for the bundle as a whole) and what."""

    path: tuple[str, ...]
    message: str


class BundleValidator(Protocol):
    """Checks a configuration bundle; returns its problems (empty when it is good). A plain
    string is a problem of the bundle as a whole."""

    def __call__(self, kind: str, body: dict[str, Any]) -> Sequence[BundleProblem | str]: ...


class AcceptedBundle(list[BundleProblem | str]):
    """No problem, and the named warnings (``code``, ``message``, ``locations``) the bundle was
    accepted with; a plain list from another validator means no warnings."""

    def __init__(self, warnings: list[dict[str, object]]) -> None:
        super().__init__()
        self.warnings = warnings


def rules_bundle_validator(kind: str, body: dict[str, Any]) -> list[BundleProblem | str]:
    """The adapter to ``dockgate.gateway.rules.load_bundle``: each of its ``BundleError``
    problems (a dotted location and a plain message) becomes a ``BundleProblem``; an accepted
    bundle's warnings ride on the empty answer (``AcceptedBundle``)."""
    try:
        from dockgate.gateway.rules import BundleError, load_bundle
    except ImportError:  # the rules engine is not installed in this build
        return [] if isinstance(body, dict) else ["a bundle must be a JSON object"]
    try:
        bundle = load_bundle(body)
    except BundleError as exc:
        return [BundleProblem(_path(p.location), p.message) for p in exc.problems]
    except (TypeError, ValueError) as exc:
        return [str(exc)]
    return AcceptedBundle([w.as_dict() for w in bundle.warnings])


def _path(location: str) -> tuple[str, ...]:
    """``speed_zones.2.max_speed`` as its parts; ``$`` (the whole bundle) as none."""
    return () if location in ("", "$") else tuple(location.split("."))


class SunPlayVerifier:
    """The adapter to ``dockgate.gateway.sun.SunVerifier``: a dynamic play carries PICC data
    (AES or LRP, told apart by length unless the key set names a mode) and a CMAC over an
    empty MAC input, checked with the named key set (replay store included). Counter-only
    PICC data takes the record's UID, as a tap takes the reader's.

    A dry check runs a twin verifier built from the same settings without a replay store (so
    nothing is written) and then compares the counter with the last one the store accepted.
    """

    def __init__(self, verifier: SunVerifier, *, key_set: str | None = None) -> None:
        self.verifier = verifier
        self.key_set = key_set
        self._dry = SunVerifier(verifier.settings, store=None)

    def verify_play(
        self,
        record_id: int,
        picc_data: str,
        cmac: str,
        *,
        consume: bool = True,
        uid: str | None = None,
    ) -> PlayCheck:
        checker = self.verifier if consume else self._dry
        result = checker.verify_fields(
            picc_data=picc_data,
            cmac=cmac,
            mac_input=b"",
            key_set=self.key_set,
            counter_only_uid=_uid_bytes(uid),
        )
        check = PlayCheck(result.valid, result.uid, result.read_ctr, result.reason)
        return check if consume or not check.valid else self._not_replayed(check)

    def _not_replayed(self, check: PlayCheck) -> PlayCheck:
        """``check`` if its counter is above the stored one (or nothing is stored to compare)."""
        replay = self.verifier.store
        if replay is None:
            return check
        if check.uid is None or check.read_ctr is None:
            reason = sun_reasons.NO_UID if check.uid is None else sun_reasons.NO_COUNTER
            return PlayCheck(False, check.uid, check.read_ctr, reason)
        last = replay.last(bytes.fromhex(check.uid))
        if last is not None and check.read_ctr <= last:
            return PlayCheck(False, check.uid, check.read_ctr, sun_reasons.REPLAYED)
        return check


def _uid_bytes(uid: str | None) -> bytes | None:
    """A record's UID as bytes; None when unknown or not hex (counter-only PICC data is then
    refused as ``no_uid``, or ``uid_length`` for hex of another length)."""
    try:
        return None if uid is None else bytes.fromhex(uid)
    except ValueError:
        return None
