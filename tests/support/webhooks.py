"""Helpers of the webhook tests: the README's signature recipe, run as written, and a
delivery loop on a thread."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from minitower_reaper.webhook_delivery import DeliveryPolicy, run_deliveries
from tests.support import readme

Verify = Callable[..., bool]


def readme_verify() -> Verify:
    """The ``verify`` function of README's "Notifications (webhooks)" section."""
    (block,) = readme.blocks("Notifications (webhooks)", "python")
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    verify: Verify = namespace["verify"]
    return verify


def fast_policy(**overrides: Any) -> DeliveryPolicy:
    """Short timeouts and backoff, private receivers allowed (they listen on 127.0.0.1)."""
    values: dict[str, Any] = {
        "timeout": 5.0,
        "allow_private": True,
        "max_age": timedelta(hours=24),
        "backoff_base": 0.2,
        "backoff_cap": 5.0,
    }
    return DeliveryPolicy(**{**values, **overrides})


@contextmanager
def delivery_loop(engine: Engine, policy: DeliveryPolicy) -> Iterator[None]:
    """``run_deliveries`` on a thread for the block's duration."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run_deliveries, args=(engine, policy), kwargs={"interval": 0.05, "stop": stop}
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()
