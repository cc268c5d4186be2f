"""dockgate.gateway.taps: tap events through the real SUN verifier, duplicates folded,
faults counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockgate.gateway.taps import TapHandler
from dockgate.sim.sdm import SdmTag
from tests.support.taps import CLONE_REASONS, FILE, META, UID, event, make_verifier


@pytest.fixture
def handler(tmp_path: Path) -> TapHandler:
    return TapHandler(make_verifier(tmp_path / "replay.db"), window=2.0)


@pytest.fixture
def sdm() -> SdmTag:
    return SdmTag(uid=UID, meta_read_key=META, file_read_key=FILE, profile="query-picc-enc-cmac")


def test_valid_tap_is_accepted_with_counter(handler: TapHandler, sdm: SdmTag) -> None:
    tap = handler.handle(event(sdm.next_url(), 10.0))
    assert tap.accepted and tap.reason is None and not tap.duplicate
    assert tap.uid == UID.hex() and tap.read_ctr == 1
    assert tap.profile == "query-picc-enc-cmac"
    line = tap.as_dict()
    assert {"reader", "uid", "url", "valid", "reason", "read_ctr", "record"} <= set(line)
    assert line["valid"] is True and line["reader"] == "r1"


def test_same_message_twice_is_one_tap_not_a_replay(handler: TapHandler, sdm: SdmTag) -> None:
    url = sdm.next_url()
    first = handler.handle(event(url, 10.0))
    again = handler.handle(event(url, 10.5))
    assert first.accepted and again.accepted and again.duplicate
    assert handler.counters == {"accepted": 1, "duplicate": 1}


def test_reread_while_on_antenna_is_a_duplicate(handler: TapHandler, sdm: SdmTag) -> None:
    handler.handle(event(sdm.next_url(), 10.0))
    reread = handler.handle(event(sdm.next_url(), 11.0))  # counter 2, same UID, same reader
    assert reread.duplicate and reread.accepted and reread.read_ctr == 2
    later = handler.handle(event(sdm.next_url(), 20.0))  # a new tap after the window
    assert later.accepted and not later.duplicate and later.read_ctr == 3


def test_replayed_message_after_window_is_rejected(handler: TapHandler, sdm: SdmTag) -> None:
    old = sdm.next_url()
    assert handler.handle(event(old, 10.0)).accepted
    assert handler.handle(event(sdm.next_url(), 30.0)).accepted
    replay = handler.handle(event(old, 60.0))
    assert not replay.accepted and replay.reason == "replayed" and not replay.duplicate
    assert handler.counters["replayed"] == 1


def test_replay_at_another_reader_is_not_a_duplicate(handler: TapHandler, sdm: SdmTag) -> None:
    url = sdm.next_url()
    assert handler.handle(event(url, 10.0, reader="r1")).accepted
    other = handler.handle(event(url, 10.2, reader="r2"))
    assert not other.accepted and other.reason == "replayed"


def test_clone_with_wrong_keys_is_bad_mac(handler: TapHandler, sdm: SdmTag) -> None:
    clone = sdm.clone(meta_read_key=FILE, file_read_key=META)
    tap = handler.handle(event(clone.next_url(), 10.0))
    assert not tap.accepted and tap.reason in CLONE_REASONS


def test_read_errors_are_counted_rejections(handler: TapHandler) -> None:
    tap = handler.handle(event(None, 10.0, error="removed"))
    assert not tap.accepted and tap.reason == "removed"
    assert handler.handle(event(None, 11.0, error=None)).reason == "no_url"
    assert handler.counters == {"removed": 1, "no_url": 1}


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/",
        "",
        "https://tap.dockgate.example/t?picc_data=ZZ&cmac=00",
        "https://tap.dockgate.example/t?picc_data=" + "0" * 32 + "&cmac=" + "0" * 16,
        "\x00\xff" * 100,
    ],
)
def test_hostile_urls_are_rejected_with_a_reason(handler: TapHandler, url: str) -> None:
    tap = handler.handle(event(url, 10.0))
    assert not tap.accepted and isinstance(tap.reason, str) and tap.reason


def test_foreign_uid_length_is_not_passed_as_reader_uid(handler: TapHandler, sdm: SdmTag) -> None:
    tap = handler.handle(event(sdm.next_url(), 10.0, uid=b"\x01\x02\x03\x04"))
    assert tap.accepted and tap.uid == UID.hex()


def test_uid_mismatch_between_reader_and_message(handler: TapHandler, sdm: SdmTag) -> None:
    tap = handler.handle(event(sdm.next_url(), 10.0, uid=bytes.fromhex("04000000000001")))
    assert not tap.accepted and tap.reason == "uid_mismatch"


def test_verifier_failure_is_a_rejection_not_a_crash(sdm: SdmTag) -> None:
    class Broken:
        def verify_url(self, url: str, *, reader_uid: bytes | None = None) -> object:
            raise RuntimeError("boom")

    tap = TapHandler(Broken()).handle(event(sdm.next_url(), 1.0))
    assert not tap.accepted and tap.reason == "verifier_error:RuntimeError"


def test_gateway_time_uses_injected_clock(tmp_path: Path, sdm: SdmTag) -> None:
    handler = TapHandler(make_verifier(tmp_path / "r.db"), clock=lambda: 10.5)
    tap = handler.handle(event(sdm.next_url(), 10.0))
    assert tap.gateway_seconds == pytest.approx(0.499)
