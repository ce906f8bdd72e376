"""Jinja2 for the console: autoescaped, with the helpers the templates share."""

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from minitower_shared.clock import rfc3339, utcnow
from minitower_shared.states import TERMINAL_RUN_STATUSES

HERE = Path(__file__).parent

# Scripts and styles come only from this origin: no inline script runs, so markup a
# user slipped past escaping still could not execute.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["pretty_json"] = lambda value: json.dumps(value, indent=2, sort_keys=True)
_env.globals["terminal_statuses"] = {s.value for s in TERMINAL_RUN_STATUSES}


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


_env.filters["human_bytes"] = _human_bytes


def _duration(start: datetime | None, end: datetime | None) -> str:
    """``1m 05s`` between two times (to now when ``end`` is None)."""
    if start is None:
        return ""
    seconds = max(((end or utcnow()) - start).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


_env.filters["duration"] = _duration
# Pages show the times the JSON API sends, in the same format.
_env.filters["rfc3339"] = rfc3339


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    html = _env.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
