"""Splitting output into lines and shipping them: cuts, order, batching, resends."""

import io
import json
import threading
import time
from typing import Any

import pytest

from minitower_runner.client import LeaseGone, Unavailable
from minitower_runner.logs import MAX_BATCH_BYTES, LogShipper, split_lines


def lines_of(data: bytes, limit: int = 16) -> list[str]:
    return list(split_lines(io.BytesIO(data), limit))


def test_lines_without_newlines_and_crlf() -> None:
    assert lines_of(b"a\nb\r\n\nlast") == ["a", "b", "", "last"]
    assert lines_of(b"") == []


def test_long_lines_are_cut_with_a_marker_and_the_next_line_survives() -> None:
    data = b"x" * 40 + b"\nshort\n"
    cut = "x" * 16 + " [minitower: line cut, 24 more bytes not kept]"
    assert lines_of(data) == [cut, "short"]


def test_a_line_exactly_at_the_limit_with_its_newline_is_whole() -> None:
    assert lines_of(b"y" * 15 + b"\nz\n") == ["y" * 15, "z"]


def test_invalid_utf8_is_replaced_not_dropped() -> None:
    assert lines_of(b"caf\xe9\n") == ["caf\ufffd"]


class Recorder:
    """A sender that can fail the first ``failures`` calls with ``error``."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.calls = 0
        self.failures = failures
        self.error = error or Unavailable("down")
        self.lock = threading.Lock()

    def __call__(self, batch: list[dict[str, Any]]) -> None:
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise self.error
            self.batches.append(list(batch))

    def seqs(self) -> list[int]:
        return [line["seq"] for batch in self.batches for line in batch]


def shipper(send: Recorder, **kwargs: Any) -> LogShipper:
    options: dict[str, Any] = {"batch_lines": 100, "flush_interval": 0.05, "on_gone": lambda: None}
    return LogShipper(send, **{**options, **kwargs})


def test_lines_are_numbered_from_one_batched_and_flushed_on_close() -> None:
    send = Recorder()
    ship = shipper(send, batch_lines=3, flush_interval=10)
    for i in range(7):
        ship.add("stdout" if i % 2 else "stderr", f"line {i}")
    assert ship.close(deadline=time.monotonic() + 5)
    assert send.seqs() == list(range(1, 8))
    assert [len(b) for b in send.batches] == [3, 3, 1]
    assert [line["stream"] for line in send.batches[0]] == ["stderr", "stdout", "stderr"]
    assert all(line["logged_at"].endswith("Z") for b in send.batches for line in b)


def test_a_lone_line_goes_out_after_the_flush_interval() -> None:
    send = Recorder()
    ship = shipper(send, flush_interval=0.05)
    ship.add("stdout", "hello")
    deadline = time.monotonic() + 5
    while not send.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert send.seqs() == [1]
    assert ship.close(deadline=time.monotonic() + 5)


def test_a_failed_batch_is_resent_with_the_same_seqs() -> None:
    send = Recorder(failures=2)
    ship = shipper(send)
    for i in range(5):
        ship.add("stdout", str(i))
    assert ship.close(deadline=time.monotonic() + 10)
    assert send.calls == 3
    assert send.seqs() == [1, 2, 3, 4, 5]


def test_gone_abandons_and_calls_back() -> None:
    gone = threading.Event()
    send = Recorder(failures=100, error=LeaseGone("gone"))
    ship = shipper(send, on_gone=gone.set)
    ship.add("stdout", "x")
    assert gone.wait(5)
    assert not ship.close(deadline=time.monotonic() + 1)
    ship.add("stdout", "ignored after the lease is gone")


def test_close_gives_up_at_the_deadline_while_the_api_is_away() -> None:
    send = Recorder(failures=10_000)
    ship = shipper(send)
    ship.add("stdout", "x")
    started = time.monotonic()
    assert not ship.close(deadline=started + 0.5)
    assert time.monotonic() - started < 2


def test_batches_stay_under_the_byte_budget() -> None:
    send = Recorder()
    ship = shipper(send, batch_lines=5000, flush_interval=10)
    big = "b" * 30_000
    for _ in range(60):
        ship.add("stdout", big)
    assert ship.close(deadline=time.monotonic() + 10)
    assert len(send.batches) > 1
    assert all(sum(len(x["line"]) for x in b) <= MAX_BATCH_BYTES + 30_000 for b in send.batches)
    assert send.seqs() == list(range(1, 61))


def test_backpressure_blocks_writers_instead_of_dropping() -> None:
    send = Recorder(failures=10**9)
    ship = shipper(send, max_pending=10)
    for i in range(10):
        ship.add("stdout", str(i))
    blocked = threading.Thread(target=ship.add, args=("stdout", "eleventh"), daemon=True)
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()
    ship.abandon()
    blocked.join(2)
    assert not blocked.is_alive()


@pytest.mark.parametrize("limit", [1, 7])
def test_tiny_limits_still_terminate(limit: int) -> None:
    assert len(lines_of(b"abcdefgh\nij\n", limit)) == 2


def test_batches_count_json_escapes_against_the_byte_budget() -> None:
    """Control characters cost six bytes each in JSON: such lines must not make a
    batch that the API refuses as too large."""
    send = Recorder()
    ship = shipper(send, batch_lines=5000, flush_interval=10)
    for _ in range(40):
        ship.add("stdout", "\x01" * 30_000)
    assert ship.close(deadline=time.monotonic() + 10)
    for batch in send.batches:
        assert len(json.dumps({"logs": batch})) <= MAX_BATCH_BYTES + 6 * 30_000 + 200
    assert send.seqs() == list(range(1, 41))


def test_close_keeping_the_last_batch_sends_the_rest_and_hands_that_one_over() -> None:
    send = Recorder()
    ship = shipper(send, batch_lines=100, flush_interval=60)
    for i in range(250):
        ship.add("stdout", f"line {i}")
    assert ship.close(deadline=time.monotonic() + 5, keep_last_batch=True)
    rest = ship.take_rest()
    # Whole batches went out; what fits in one more stays for the result.
    assert send.seqs() + [line["seq"] for line in rest] == list(range(1, 251))
    assert 0 < len(rest) <= 100
    assert all(set(line) == {"seq", "stream", "line", "logged_at"} for line in rest)
    assert ship.take_rest() == []


def test_close_keeping_the_last_batch_sends_nothing_when_all_fits_in_it() -> None:
    send = Recorder()
    ship = shipper(send, flush_interval=60)
    ship.add("stdout", "only")
    assert ship.close(deadline=time.monotonic() + 5, keep_last_batch=True)
    assert send.calls == 0
    assert [line["line"] for line in ship.take_rest()] == ["only"]
