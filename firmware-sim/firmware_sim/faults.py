"""Fault injection for the simulated fleet: what a bad day in the field looks like on the wire.

A :class:`FaultPlan` says how often each fault happens; each device draws from its own seeded
random stream (:meth:`FaultPlan.for_device`) so a run is reproducible. Probabilities are per
command (lost and slow acks) or per spot actuation (jams, locks that do not answer); the
chaos faults (disconnects, malformed, oversized and spoofed payloads) are rates per device
per simulated hour.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, fields

FAULT_NAMES = (
    "lost-ack",
    "slow-ack",
    "jam",
    "no-answer",
    "disconnect",
    "malformed",
    "oversized",
    "spoofed",
)
CHAOS_FAULTS = ("disconnect", "malformed", "oversized", "spoofed")


class FaultSpecError(ValueError):
    """A ``--faults`` specification that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """How often each fault happens (0 disables it)."""

    lost_ack: float = 0.0  # P(an ack is never sent) per command
    slow_ack: float = 0.0  # P(an ack is late) per command
    slow_ack_s: float = 1.5  # how late, in real seconds (network lag is not world time)
    jam: float = 0.0  # P(a spot lock jams) per actuation
    no_answer: float = 0.0  # P(a spot lock does not answer) per actuation
    disconnect: float = 0.0  # abrupt connection losses per device per simulated hour
    offline_s: float = 120.0  # mean simulated seconds a dropped device stays away
    malformed: float = 0.0  # malformed payloads per device per simulated hour
    oversized: float = 0.0  # oversized payloads per device per simulated hour
    spoofed: float = 0.0  # payloads carrying another device's id, per device per hour
    seed: int = 1

    @classmethod
    def parse(cls, spec: str | None, seed: int = 1) -> FaultPlan:
        """Parse ``"none"``, ``"all"`` or ``"lost-ack=0.05,jam=0.1,disconnect=2"``.

        ``all`` turns every fault on at a rate that shows each one within minutes; a bare name
        (``jam``) uses that default rate.
        """
        if spec is None or spec.strip().lower() in ("", "none", "off"):
            return cls(seed=seed)
        values: dict[str, float] = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name, _, raw = part.partition("=")
            name = name.strip().lower()
            if name == "all":
                values.update({k: v for k, v in ALL_FAULTS.items() if k not in values})
                continue
            if name not in FAULT_NAMES and name not in ("slow-ack-s", "offline-s"):
                raise FaultSpecError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
            try:
                value = float(raw) if raw else ALL_FAULTS[name]
            except (ValueError, KeyError):
                raise FaultSpecError(f"fault {name!r} needs a number, got {raw!r}") from None
            if value < 0 or math.isnan(value) or value == float("inf"):
                raise FaultSpecError(f"fault {name!r} must be a finite number >= 0")
            if name in ("lost-ack", "slow-ack", "jam", "no-answer") and value > 1:
                raise FaultSpecError(f"fault {name!r} is a probability (0..1), got {value}")
            values[name] = value
        return cls(seed=seed, **{k.replace("-", "_"): v for k, v in values.items()})

    @property
    def active(self) -> list[str]:
        """Names of the faults that are switched on."""
        return [n for n in FAULT_NAMES if getattr(self, n.replace("-", "_")) > 0]

    def for_device(self, device_id: str) -> FaultDice:
        """This device's own reproducible dice."""
        return FaultDice(
            self, random.Random(self.seed * 1_000_003 + zlib.crc32(device_id.encode()))
        )

    def describe(self) -> str:
        names = {f.name for f in fields(self)} - {"seed", "slow_ack_s", "offline_s"}
        on = [
            f"{n.replace('_', '-')}={getattr(self, n)}" for n in sorted(names) if getattr(self, n)
        ]
        return ",".join(on) or "none"


#: Rates that ``--faults all`` uses.
ALL_FAULTS: dict[str, float] = {
    "lost-ack": 0.05,
    "slow-ack": 0.05,
    "jam": 0.05,
    "no-answer": 0.02,
    "disconnect": 0.5,
    "malformed": 1.0,
    "oversized": 0.5,
    "spoofed": 0.5,
    "slow-ack-s": 1.5,
    "offline-s": 120.0,
}


class FaultDice:
    """One device's draws from a :class:`FaultPlan`."""

    __slots__ = ("plan", "rng")

    def __init__(self, plan: FaultPlan, rng: random.Random) -> None:
        self.plan = plan
        self.rng = rng

    def _hit(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p

    def lose_ack(self) -> bool:
        return self._hit(self.plan.lost_ack)

    def ack_delay(self) -> float:
        """Real seconds to hold the ack back (0 for most commands)."""
        return self.plan.slow_ack_s if self._hit(self.plan.slow_ack) else 0.0

    def jam(self) -> bool:
        return self._hit(self.plan.jam)

    def no_answer(self) -> bool:
        return self._hit(self.plan.no_answer)

    def offline_for(self) -> float:
        return self.rng.expovariate(1.0 / self.plan.offline_s) if self.plan.offline_s > 0 else 0

    def next_chaos(self) -> tuple[float, str] | None:
        """Simulated seconds until the next chaos fault of this device, and which one."""
        rates = [(n, getattr(self.plan, n)) for n in CHAOS_FAULTS]
        total = sum(r for _, r in rates)
        if total <= 0:
            return None
        wait = self.rng.expovariate(total / 3600.0)
        pick = self.rng.uniform(0, total)
        for name, rate in rates:
            pick -= rate
            if pick <= 0:
                return wait, name
        return wait, rates[-1][0]


def malformed_payload(rng: random.Random, good: bytes) -> bytes:
    """A broken variant of a good payload: cut JSON, wrong types, missing fields, garbage."""
    variants = (
        lambda: good[: max(1, len(good) // 2)],  # truncated JSON
        lambda: b"\xff\xfe" + rng.randbytes(24),  # not UTF-8 at all
        lambda: good.replace(b'"v":1', b'"v":"one"', 1),  # wrong type
        lambda: b'{"v":1}',  # missing fields
        lambda: good.replace(b"}", b',"injected":"<script>"}', 1),  # unknown field
        lambda: b"[]",  # valid JSON, wrong shape
        lambda: good.replace(b'"ts":', b'"ts":1', 1) + b"",  # absurd timestamp (x10)
    )
    return rng.choice(variants)()


def oversized_payload(good: bytes, size: int) -> bytes:
    """A syntactically valid payload padded past the size limit with an extra field."""
    pad = max(0, size - len(good) + 16)
    return good[:-1] + b',"pad":"' + b"A" * pad + b'"}'
