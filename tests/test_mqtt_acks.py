"""The PUBACK ledger: acknowledgements leave in arrival order (MQTT v5 section 4.6), each only
once its message is settled, a batch's together, and nothing of an earlier connection."""

from __future__ import annotations

from dockgate.drivers.mqtt.acks import AckLedger


def ledger() -> tuple[AckLedger, list[list[int]]]:
    writes: list[list[int]] = []
    return AckLedger(lambda mids: writes.append(list(mids))), writes


def test_a_batch_is_acknowledged_in_one_write_in_arrival_order() -> None:
    acks, writes = ledger()
    seqs = [acks.arrive(mid, settled=False) for mid in (5, 3, 9)]
    assert writes == []
    acks.commit(seqs)
    assert writes == [[5, 3, 9]]
    assert acks.open == 0 and acks.sent == 3


def test_a_message_committed_early_waits_for_those_before_it() -> None:
    acks, writes = ledger()
    telemetry = [acks.arrive(mid, settled=False) for mid in (1, 2)]
    tap = acks.arrive(3, settled=False)
    acks.commit([tap])  # the tap overtook the telemetry queued ahead of it
    assert writes == []
    acks.commit(telemetry[:1])
    assert writes == [[1]]
    acks.commit(telemetry[1:])
    assert writes == [[1], [2, 3]]


def test_a_refusal_is_acknowledged_on_arrival_unless_something_before_it_is_open() -> None:
    acks, writes = ledger()
    acks.arrive(1, settled=True)
    assert writes == [[1]]
    open_seq = acks.arrive(2, settled=False)
    acks.arrive(3, settled=True)
    assert writes == [[1]]
    acks.commit([open_seq])
    assert writes == [[1], [2, 3]]


def test_nothing_of_an_earlier_connection_is_acknowledged_on_the_next() -> None:
    acks, writes = ledger()
    old = acks.arrive(7, settled=False)
    acks.forget()  # reconnected: the broker redelivers message 7 itself
    new = acks.arrive(7, settled=False)  # the same packet id on the new connection
    acks.commit([old])
    assert writes == []
    acks.commit([new])
    assert writes == [[7]]
