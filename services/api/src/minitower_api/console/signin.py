"""Sign in (team slug and password, or a pasted team token) and sign out."""

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from minitower_api.console.session import (
    COOKIE,
    SIGNIN_COOKIE,
    PostViewerDep,
    find_viewer,
    safe_next,
    set_cookie,
    start_session,
)
from minitower_api.console.templating import render
from minitower_api.deps import Services, ServicesDep
from minitower_api.errors import HttpProblem
from minitower_api.routers.team_auth import authenticate_team, client_address, issue_admin_token
from minitower_shared.clock import utcnow
from minitower_shared.store import audit as audit_store
from minitower_shared.store import console_sessions as session_store
from minitower_shared.store import teams as team_store
from minitower_shared.store.audit import AuditObject
from minitower_shared.tokens import hash_token

router = APIRouter(include_in_schema=False)

SIGNIN_TTL = 3600


def _signin_page(
    request: Request, services: Services, next_path: str, error: str | None, status: int = 200
) -> HTMLResponse:
    form_token = request.cookies.get(SIGNIN_COOKIE)
    if not form_token or len(form_token) != 43:
        form_token = secrets.token_urlsafe(32)
    response = render(
        request,
        "signin.html",
        {
            "viewer": None,
            "next": next_path,
            "error": error,
            "form_token": form_token,
            "min_password_length": services.settings.min_password_length,
        },
        status_code=status,
    )
    set_cookie(response, request, SIGNIN_COOKIE, form_token, SIGNIN_TTL)
    return response


@router.get("/signin", response_class=HTMLResponse)
def signin_page(
    request: Request, services: ServicesDep, next: Annotated[str | None, Query()] = None
) -> Response:
    if find_viewer(services, request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _signin_page(request, services, safe_next(next), None)


@router.post("/signin", response_class=HTMLResponse)
async def signin(
    request: Request,
    services: ServicesDep,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
    slug: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    next_path = safe_next(next)
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
        return _signin_page(
            request, services, next_path, "The sign-in form expired: please try again.", 403
        )
    response = RedirectResponse(next_path, status_code=303)
    if token:
        with services.read() as session:
            record = team_store.find_active_token(session, hash_token(token.strip()))
        if record is None:
            return _signin_page(
                request, services, next_path, "That token is not valid (revoked or mistyped).", 401
            )
        assert record.id is not None
        await run_in_threadpool(
            start_session,
            services,
            request,
            response,
            team_id=record.team_id,
            token_id=record.id,
            owns_token=False,
        )
    else:
        try:
            team = await run_in_threadpool(
                authenticate_team, services, slug.strip(), password, client_address(request)
            )
        except HttpProblem as exc:
            return _signin_page(request, services, next_path, exc.message, exc.status)
        assert team.id is not None
        _, token_id = await run_in_threadpool(issue_admin_token, services, team.id, "console")
        await run_in_threadpool(
            start_session,
            services,
            request,
            response,
            team_id=team.id,
            token_id=token_id,
            owns_token=True,
        )
    response.delete_cookie(SIGNIN_COOKIE, path="/")
    return response


@router.post("/signout")
def signout(request: Request, services: ServicesDep, viewer: PostViewerDep) -> Response:
    with services.write() as session:
        session_store.end_session(session, viewer.session, utcnow())
        audit_store.record(
            session,
            viewer.caller.actor,
            "session.end",
            AuditObject("token", viewer.caller.token.id or 0),
        )
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
