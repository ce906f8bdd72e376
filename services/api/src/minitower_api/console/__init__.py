"""The web console: server-rendered pages (Jinja2) with a little JavaScript for live
parts, served by the API process at ``/``.

The pages act through the JSON routes' own functions with the signed-in session's
caller, so the console can never do what the API refuses. ``install(app)`` adds the
pages, the static files and the handler that turns a page's errors into HTML.
"""

from minitower_api.console.router import install

__all__ = ["install"]
