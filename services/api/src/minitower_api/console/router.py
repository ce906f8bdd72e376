"""Wires the console into the API application."""

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from minitower_api.console import admin, apps, overview, runs, signin
from minitower_api.console.session import PageError, SignInRequired, find_viewer
from minitower_api.console.templating import HERE, render

STATIC_PATH = "/console-static"


def install(app: FastAPI) -> None:
    for module in (signin, overview, runs, apps, admin):
        app.include_router(module.router)
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="console-static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(_request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(f"/signin?next={quote(exc.next_path, safe='/')}", status_code=303)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> HTMLResponse:
        services = request.app.state.services
        return render(
            request,
            "error.html",
            {
                "viewer": find_viewer(services, request),
                "status": exc.status,
                "message": exc.message,
            },
            status_code=exc.status,
        )
