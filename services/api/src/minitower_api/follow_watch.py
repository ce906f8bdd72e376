"""The slow fallback behind the log followers' notifications.

Followers sleep until a writer of this process wakes their run (run_signals.py). What
this process does not write itself, a reaper ending or re-queueing a run, and the
revocation of a follower's token, are found here: one task re-reads the statuses of the
followed runs and the followed tokens every ``interval`` seconds, in two queries however
many followers there are, and wakes the runs whose status changed or whose followers'
tokens were revoked. Each woken follower then reads the run itself.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool

from minitower_api.run_signals import RunSignals

log = logging.getLogger("minitower.api")

# (statuses of the runs, the tokens among them that are no longer active)
ReadFollowed = Callable[[list[int], list[int]], tuple[dict[int, str], set[int]]]


class FollowWatch:
    def __init__(self, signals: RunSignals, read: ReadFollowed, interval: float) -> None:
        self.signals = signals
        self.read = read
        self.interval = interval
        self._follows: Counter[tuple[int, int]] = Counter()
        self._statuses: dict[int, str] = {}

    def add(self, run_id: int, token_id: int) -> None:
        self._follows[(run_id, token_id)] += 1

    def discard(self, run_id: int, token_id: int) -> None:
        self._follows[(run_id, token_id)] -= 1
        if self._follows[(run_id, token_id)] <= 0:
            del self._follows[(run_id, token_id)]

    async def tick(self) -> set[int]:
        """One re-read; the runs it woke."""
        follows = list(self._follows)
        if not follows:
            self._statuses = {}
            return set()
        run_ids = sorted({run_id for run_id, _ in follows})
        token_ids = sorted({token_id for _, token_id in follows})
        statuses, inactive = await run_in_threadpool(self.read, run_ids, token_ids)
        woken = {
            run_id
            for run_id, token_id in follows
            if token_id in inactive or statuses.get(run_id) != self._statuses.get(run_id)
        }
        self._statuses = statuses
        for run_id in woken:
            self.signals.wake(run_id)
        return woken

    async def run(self) -> None:
        """Until cancelled (at shutdown); a failed read is logged and tried again."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except Exception:
                log.exception("log followers' re-check failed")
