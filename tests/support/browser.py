"""Debian's chromium driven by Playwright for Python (its own browser download cannot
work on these hosts). Missing, the console tests skip with a message, except under
MINITOWER_REQUIRE_DOCKER=1 (CI), where they fail: ``.ci/run`` installs it
(``scripts/install-chromium``)."""

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("MINITOWER_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--no-sandbox"]


def require_chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} is missing: run scripts/install-chromium (Debian's chromium package)"
    if os.environ.get("MINITOWER_REQUIRE_DOCKER") == "1":
        pytest.fail(message)
    pytest.skip(message)
