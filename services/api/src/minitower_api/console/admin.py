"""Admin pages: runners, and the team's tokens (create with the secret shown once,
revoke)."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from minitower_api.console.calls import api, validation_message
from minitower_api.console.session import PostViewerDep, Viewer, ViewerDep, admin_only
from minitower_api.console.templating import render
from minitower_api.deps import Page, Services, ServicesDep, TokenId
from minitower_api.routers import runners as runner_routes
from minitower_api.routers import tokens as token_routes
from minitower_shared.schemas import TokenCreate, TokenCreated

router = APIRouter(include_in_schema=False)


@router.get("/runners", response_class=HTMLResponse)
def runners_page(request: Request, viewer: ViewerDep, services: ServicesDep) -> HTMLResponse:
    admin_only(viewer)
    listing = api(
        runner_routes.list_runners, viewer.caller, services, Page(limit=200, cursor=None, offset=0)
    )
    return render(request, "runners.html", {"viewer": viewer, "runners": listing.runners})


def _tokens_page(
    request: Request,
    viewer: Viewer,
    services: Services,
    created: TokenCreated | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    listing = api(
        token_routes.list_tokens, viewer.caller, services, Page(limit=200, cursor=None, offset=0)
    )
    return render(
        request,
        "tokens.html",
        {
            "viewer": viewer,
            "tokens": listing.tokens,
            "created": created,
            "error": error,
            "own_token_id": viewer.caller.token.id,
        },
        status_code=status,
    )


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, viewer: ViewerDep, services: ServicesDep) -> HTMLResponse:
    admin_only(viewer)
    return _tokens_page(request, viewer, services)


@router.post("/tokens", response_class=HTMLResponse)
def create_token(
    request: Request,
    viewer: PostViewerDep,
    services: ServicesDep,
    name: Annotated[str, Form(max_length=400)] = "",
    role: Annotated[str, Form(max_length=20)] = "member",
) -> Response:
    admin_only(viewer)
    try:
        body = TokenCreate(name=name.strip(), role=role)  # type: ignore[arg-type]
    except ValidationError as exc:
        return _tokens_page(request, viewer, services, error=validation_message(exc), status=400)
    created = api(token_routes.create_token, viewer.caller, services, body)
    # The secret is in this answer only: the page is not cached (templating.py), and a
    # reload asks to post again rather than showing it twice.
    return _tokens_page(request, viewer, services, created=created, status=201)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    token_id: TokenId, viewer: PostViewerDep, services: ServicesDep
) -> RedirectResponse:
    admin_only(viewer)
    api(token_routes.revoke_token, token_id, viewer.caller, services)
    return RedirectResponse("/tokens", status_code=303)
