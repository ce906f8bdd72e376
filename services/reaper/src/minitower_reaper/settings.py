"""The reaper's configuration: ``MINITOWER_*`` environment variables."""

from pydantic import Field

from minitower_shared.durations import PositiveSeconds
from minitower_shared.service_settings import DatabaseServiceSettings, WebhookTargetSettings


class ReaperSettings(DatabaseServiceSettings, WebhookTargetSettings):
    expiry_check_interval: PositiveSeconds = 5.0
    # Longer than the longest lease long poll (30 s) plus a heartbeat interval, so a
    # healthy idle runner never flaps to offline.
    runner_offline_after: PositiveSeconds = 90.0
    # This reaper's row in reaper_pass (default hostname:pid). A fixed name keeps one row
    # across restarts; two live reapers must not share one.
    reaper_name: str | None = Field(default=None, min_length=1, max_length=200)
    # Webhook delivery (README, "Notifications (webhooks)").
    webhook_delivery_enabled: bool = True
    webhook_poll_interval: PositiveSeconds = 1.0
    webhook_timeout: PositiveSeconds = 10.0
    # Retries back off from the base, doubling, up to the cap; a delivery still failing
    # when its event is older than the max age is marked failed.
    webhook_backoff_base: PositiveSeconds = 10.0
    webhook_backoff_max: PositiveSeconds = 3600.0
    webhook_max_age: PositiveSeconds = 24 * 3600.0
