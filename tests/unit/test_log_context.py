"""The ids bound for a piece of work, and the threads that carry them."""

import threading
from collections.abc import Callable, Mapping
from typing import Any

from minitower_shared.log_context import bound_ids, carry_context, current_ids


def start_and_join(target: Callable[[], None], count: int = 1) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()


def test_ids_nest_and_end_with_their_block() -> None:
    assert current_ids() == {}
    with bound_ids(run_id=1, attempt_no=1):
        with bound_ids(attempt_no=2):
            assert current_ids() == {"run_id": 1, "attempt_no": 2}
        assert current_ids() == {"run_id": 1, "attempt_no": 1}
    assert current_ids() == {}


def test_a_thread_carries_the_ids_of_the_work_that_started_it() -> None:
    seen: list[Mapping[str, Any]] = []
    barrier = threading.Barrier(2, timeout=5)

    def record() -> None:
        barrier.wait()  # both threads inside the same carried callable at once
        seen.append(dict(current_ids()))

    with bound_ids(run_id=7):
        carried = carry_context(record)
        plain = threading.Thread(target=lambda: seen.append(dict(current_ids())))
        plain.start()
        plain.join(5)
    start_and_join(carried, count=2)
    assert seen == [{}, {"run_id": 7}, {"run_id": 7}]
