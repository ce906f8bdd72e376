"""Console sessions: an HttpOnly, SameSite=Strict cookie holding a random id, mapped to a
server-side row (store/console_sessions.py) that acts as one team token; a CSRF token
per session on every form that changes something."""

import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request, Response

from minitower_api.deps import Caller, Services, ServicesDep
from minitower_shared.clock import utcnow
from minitower_shared.models import ConsoleSession, TeamToken
from minitower_shared.store import audit as audit_store
from minitower_shared.store import console_sessions as session_store
from minitower_shared.store.audit import AuditActor, AuditObject
from minitower_shared.store.teams import TeamIdentity, TokenIdentity
from minitower_shared.tokens import hash_token

COOKIE = "mt_console"
# The sign-in form's own CSRF token, before any session exists (a double-submit cookie):
# it keeps another site from signing a browser into the attacker's team.
SIGNIN_COOKIE = "mt_signin"
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):
    """No live session: a page answers with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageError(Exception):
    """A page's refusal, rendered as an HTML page with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page: the caller the JSON routes see, and the session's CSRF
    token for its forms."""

    caller: Caller
    session: ConsoleSession
    csrf_token: str

    @property
    def is_admin(self) -> bool:
        return self.caller.is_admin


def is_https(request: Request) -> bool:
    # uvicorn rewrites the scheme from X-Forwarded-Proto when the proxy is trusted
    # (FORWARDED_ALLOW_IPS), so this is true behind a TLS-terminating proxy too.
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def start_session(
    services: Services,
    request: Request,
    response: Response,
    *,
    team_id: int,
    token_id: int,
    owns_token: bool,
) -> None:
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    ttl = services.settings.console_session_ttl
    with services.write() as session:
        session_store.create_session(
            session,
            session_hash=hash_token(session_id),
            team_id=team_id,
            token_id=token_id,
            owns_token=owns_token,
            csrf_secret=secrets.token_urlsafe(32),
            now=now,
            expires_at=now + timedelta(seconds=ttl),
        )
        token = session.get(TeamToken, token_id)
        audit_store.record(
            session,
            AuditActor(
                kind=audit_store.CONSOLE,
                team_id=team_id,
                token_id=token_id,
                name=token.name if token is not None else "",
            ),
            "session.start",
            AuditObject("token", token_id),
        )
    # The server-side row decides when the session ends; the cookie just lasts as long.
    set_cookie(response, request, COOKIE, session_id, max(1, math.ceil(ttl)))


def find_viewer(services: Services, request: Request) -> Viewer | None:
    session_id = request.cookies.get(COOKIE)
    # A cookie this server set is 43 characters; anything far longer is not worth a hash.
    if not session_id or len(session_id) > 200:
        return None
    with services.read() as session:
        live = session_store.find_live_session(session, hash_token(session_id), utcnow())
    if live is None:
        return None
    return Viewer(
        caller=Caller(
            team=TeamIdentity.of(live.team),
            token=TokenIdentity.of(live.token),
            via=audit_store.CONSOLE,
        ),
        session=live.session,
        csrf_token=live.session.csrf_secret,
    )


def _next_path(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


async def _form_csrf(request: Request) -> str | None:
    form = await request.form()
    value = form.get(CSRF_FIELD)
    return value if isinstance(value, str) else None


def current_viewer(request: Request, services: ServicesDep) -> Viewer:
    viewer = find_viewer(services, request)
    if viewer is None:
        raise SignInRequired(_next_path(request) if request.method == "GET" else "/")
    return viewer


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


async def checked_viewer(request: Request, viewer: ViewerDep) -> Viewer:
    """The viewer of a form post that carries its session's CSRF token (403 without)."""
    sent = await _form_csrf(request)
    if sent is None or not hmac.compare_digest(sent.encode(), viewer.csrf_token.encode()):
        raise PageError(
            403,
            "This form has expired or did not come from this console: "
            "reload the page and try again.",
        )
    return viewer


PostViewerDep = Annotated[Viewer, Depends(checked_viewer)]


def admin_only(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise PageError(403, "This page is for admins: sign in with an admin token.")


def safe_next(value: str | None) -> str:
    """Only a path on this site: never ``//evil.example`` or a full URL."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value
