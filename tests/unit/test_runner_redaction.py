"""Secret values out of log lines: whole, overlapping, nested, across lines, held back
no longer than the shipper's flush, and short values left alone (MIN_REDACTED_CHARS)."""

import io
import time
from typing import Any

from minitower_runner.logs import CUT_MARKER, MAX_LINE_BYTES, LogShipper, split_lines
from minitower_runner.redaction import MASK, MIN_REDACTED_CHARS, Redactor
from tests.unit.test_runner_logs import Recorder


def feed_all(redactor: Redactor, lines: list[str], stream: str = "stdout") -> list[str]:
    out: list[str] = []
    for line in lines:
        out += redactor.feed(stream, line)
    return out + [line for _, line in redactor.flush()]


def test_a_value_anywhere_in_a_line_is_masked_every_time() -> None:
    r = Redactor(["hunter22"])
    assert feed_all(r, ["pw=hunter22 and again hunter22", "hunter22", "nothing"]) == [
        f"pw={MASK} and again {MASK}",
        MASK,
        "nothing",
    ]


def test_no_values_passes_lines_through_untouched() -> None:
    r = Redactor([])
    assert r.feed("stdout", "anything") == ["anything"]
    assert not r.holding


def test_short_and_empty_values_are_not_redacted() -> None:
    short = "x" * (MIN_REDACTED_CHARS - 1)
    r = Redactor(["", short, "\n\n", "ab\n"])
    assert feed_all(r, [f"a {short} b", "", "ab"]) == [f"a {short} b", "", "ab"]


def test_the_minimum_length_is_redacted() -> None:
    value = "k" * MIN_REDACTED_CHARS
    assert feed_all(Redactor([value]), [f"<{value}>"]) == [f"<{MASK}>"]


def test_overlapping_values_are_masked_as_one_run() -> None:
    r = Redactor(["abcd", "cdef"])
    assert feed_all(r, ["xabcdefy", "abcd-cdef"]) == [f"x{MASK}y", f"{MASK}-{MASK}"]


def test_a_value_that_is_a_prefix_of_another_leaves_nothing_of_the_longer() -> None:
    r = Redactor(["token", "token-extended-part"])
    assert feed_all(r, ["a token-extended-part b", "a token b", "tokens"]) == [
        f"a {MASK} b",
        f"a {MASK} b",
        f"{MASK}s",
    ]


def test_a_repeated_pattern_value_is_found_in_a_longer_run() -> None:
    r = Redactor(["abab"])
    assert feed_all(r, ["ababab", "aabab"]) == [MASK, f"a{MASK}"]


def test_a_multi_line_value_is_masked_on_every_line_it_spans() -> None:
    pem = "-----BEGIN KEY-----\nMIIEabcdef\n-----END KEY-----"
    r = Redactor([pem])
    out = feed_all(r, ["before", *pem.split("\n"), "after"])
    assert out == ["before", MASK, MASK, MASK, "after"]


def test_a_value_printed_in_two_pieces_is_masked_in_both() -> None:
    value = "correct-horse-battery"
    r = Redactor([value])
    out = feed_all(r, ["key: correct-hor", "se-battery (end)"])
    assert out == [f"key: {MASK}", f"{MASK} (end)"]
    assert all("horse" not in line and "correct" not in line for line in out)


def test_a_line_ending_with_a_value_start_is_held_until_the_next_line() -> None:
    r = Redactor(["secretvalue"])
    assert r.feed("stdout", "value is secr") == []
    assert r.holding
    assert r.feed("stdout", "et is not it.") == ["value is secr", "et is not it."]
    assert not r.holding


def test_streams_are_matched_apart() -> None:
    r = Redactor(["secretvalue"])
    assert r.feed("stdout", "half: secret") == []
    assert r.feed("stderr", "value on the other stream") == ["value on the other stream"]
    assert r.feed("stdout", "value") == [f"half: {MASK}", MASK]


def test_flush_releases_held_lines_with_their_masks() -> None:
    r = Redactor(["abcdef", "cdefgh"])
    assert r.feed("stdout", "xx abcdef cdefg") == []
    assert r.flush() == [("stdout", f"xx {MASK} cdefg")]


def test_a_match_ending_in_a_held_line_keeps_its_mask_there() -> None:
    # "ab|cd" completes a value; "cd" then also starts another value: the line is held
    # and must keep the mask of the first match when it is released.
    r = Redactor(["abcd", "cdzzzz"])
    assert r.feed("stdout", "ab") == []
    assert r.feed("stdout", "cd") == [MASK]
    assert r.flush() == [("stdout", MASK)]


def test_a_value_with_crlf_is_found_across_lines() -> None:
    r = Redactor(["line-one\r\nline-two"])
    assert feed_all(r, ["line-one", "line-two"]) == [MASK, MASK]


def test_a_long_value_costs_linear_time() -> None:
    value = "a" * 60_000 + "b"
    r = Redactor([value])
    started = time.monotonic()
    out = feed_all(r, ["a" * 30_000 for _ in range(20)])
    assert time.monotonic() - started < 5
    assert len(out) == 20


def shipped(send: Recorder) -> list[Any]:
    return [line["line"] for batch in send.batches for line in batch]


def test_the_shipper_redacts_and_numbers_lines_in_order() -> None:
    send = Recorder()
    ship = LogShipper(send, batch_lines=100, flush_interval=10, on_gone=lambda: None)
    ship.redact(["hunter22", "multi\nline-secret"])
    for line in ["a hunter22", "multi", "line-secret", "b"]:
        ship.add("stdout", line)
    assert ship.close(deadline=time.monotonic() + 5)
    assert shipped(send) == [f"a {MASK}", MASK, MASK, "b"]
    assert [line["seq"] for batch in send.batches for line in batch] == [1, 2, 3, 4]


def test_a_held_line_goes_out_after_the_flush_interval() -> None:
    send = Recorder()
    ship = LogShipper(send, batch_lines=100, flush_interval=0.05, on_gone=lambda: None)
    ship.redact(["secretvalue"])
    ship.add("stdout", "ends with secr")
    deadline = time.monotonic() + 5
    while not send.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert shipped(send) == ["ends with secr"]
    assert ship.close(deadline=time.monotonic() + 5)


def test_a_cut_line_ending_with_a_value_start_masks_it_and_holds_nothing() -> None:
    redactor = Redactor(["secretvalue"])
    assert redactor.feed("stdout", "x" * 10 + "secr", cut=True) == ["x" * 10 + MASK]
    assert not redactor.holding
    # Across a held line: the beginning spans both, and both lose their part of it.
    assert redactor.feed("stdout", "a sec") == []
    assert redactor.feed("stdout", "re", cut=True) == [f"a {MASK}", MASK]


def test_a_value_across_the_line_cut_leaves_nothing_of_it() -> None:
    """The runner cuts lines at MAX_LINE_BYTES and drops the rest: a value straddling
    the cut must not go out as its first half."""
    value = "hunter22-the-long-secret"
    send = Recorder()
    ship = LogShipper(send, batch_lines=100, flush_interval=10, on_gone=lambda: None)
    ship.redact([value])
    output = b"a" * (MAX_LINE_BYTES - 9) + value.encode() + b" and more\nnext\n"
    for line in split_lines(io.BytesIO(output)):
        ship.add("stdout", line)
    assert ship.close(deadline=time.monotonic() + 5)
    cut, following = shipped(send)
    assert cut == "a" * (MAX_LINE_BYTES - 9) + MASK + CUT_MARKER.format(dropped=24)
    assert following == "next"
