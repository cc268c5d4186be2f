"""What the API needs from the rest of the gateway, as small interfaces injected at start-up.

The daemon wires the MQTT driver, the SUN verifier and the rules loader in here; tests and the
CLI can wire other implementations. Each real implementation sits behind exactly one adapter.
"""

from __future__ import annotations

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

    ``consume=True`` stores the tag's counter, so the same scan is refused next time;
    ``consume=False`` is a dry check: the MAC is verified and the counter must be above the
    stored one, and nothing is stored.
    """

    def verify_play(
        self, record_id: int, picc_data: str, cmac: str, *, consume: bool = True
    ) -> PlayCheck: ...


class BundleValidator(Protocol):
    """Checks a configuration bundle; returns a list of problems (empty when it is good)."""

    def __call__(self, kind: str, body: dict[str, Any]) -> list[str]: ...


def rules_bundle_validator(kind: str, body: dict[str, Any]) -> list[str]:
    """The adapter to ``dockgate.gateway.rules.load_bundle``: its ``BundleError.problems``
    become ours."""
    try:
        from dockgate.gateway.rules import BundleError, load_bundle
    except ImportError:  # the rules engine is not installed in this build
        return [] if isinstance(body, dict) else ["a bundle must be a JSON object"]
    try:
        load_bundle(body)
    except BundleError as exc:
        return [str(p) for p in getattr(exc, "problems", [str(exc)])] or [str(exc)]
    except (TypeError, ValueError) as exc:
        return [str(exc)]
    return []


class SunPlayVerifier:
    """The adapter to ``dockgate.gateway.sun.SunVerifier``: a dynamic play carries PICC data
    and a CMAC over an empty MAC input, checked with the named key set (replay store included).

    A dry check runs a twin verifier built from the same settings without a replay store (so
    nothing is written) and then compares the counter with the last one the store accepted.
    """

    def __init__(self, verifier: SunVerifier, *, key_set: str | None = None) -> None:
        self.verifier = verifier
        self.key_set = key_set
        self._dry = SunVerifier(verifier.settings, store=None)

    def verify_play(
        self, record_id: int, picc_data: str, cmac: str, *, consume: bool = True
    ) -> PlayCheck:
        checker = self.verifier if consume else self._dry
        result = checker.verify_fields(
            picc_data=picc_data, cmac=cmac, mac_input=b"", key_set=self.key_set
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
