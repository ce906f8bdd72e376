"""The console in Chromium against a live stack, as a person uses it: sign in, deploy the
example with the CLI, start a run from the form, watch its log live, cancel, rerun,
tokens, and what a member, another team, a forged form or an old cookie can do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.cli import EXAMPLES, write_app
from tests.support.clients import TeamClient, check
from tests.support.console import (
    RUN_TIMEOUT_MS,
    TEAM,
    VIEWPORT,
    ConsoleStack,
    member_token,
    sign_in_with_password,
    sign_in_with_token,
)
from tests.support.tokens import BOOTSTRAP_TOKEN
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

SLEEPER = {
    "main.py": """\
        import json, os, sys, time
        params = json.loads(os.environ["MINITOWER_INPUT"])
        for n in range(1, params["lines"] + 1):
            print(f"tick {n}", flush=True)
            time.sleep(params["pause"])
        print("<script>window.pwned = 1</script><b>bold?</b>", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        """
}
SLEEPER_PARAMS = """
    [[parameters]]
    name = "lines"
    type = "integer"
    description = "How many lines to print"
    default = 3

    [[parameters]]
    name = "pause"
    type = "number"
    description = "Seconds between lines"
    default = 0
    """


@pytest.fixture(scope="module")
def deployed(stack: ConsoleStack) -> ConsoleStack:
    stack.cli.ok("deploy", str(EXAMPLES / "hello"))
    folder = write_app(stack.workdir / "sleeper", "sleeper", SLEEPER, SLEEPER_PARAMS)
    stack.cli.ok("deploy", str(folder))
    return stack


def run_id_of(page: Page) -> int:
    match = re.search(r"/runs/(\d+)$", page.url)
    assert match, page.url
    return int(match.group(1))


def expect_status(page: Page, status: str, timeout: float = RUN_TIMEOUT_MS) -> None:
    expect(page.locator("#run-status .status")).to_have_text(status, timeout=timeout)


def start_from_form(page: Page, app: str, **params: str) -> int:
    page.goto(f"/apps/{app}")
    for name, value in params.items():
        page.get_by_label(re.compile(rf"^{name}\b")).fill(value)
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    return run_id_of(page)


def test_sign_in_run_hello_from_the_form_and_read_its_log(
    deployed: ConsoleStack, page: Page, tmp_path: Path
) -> None:
    sign_in_with_password(page)
    header = page.get_by_role("banner")
    expect(header).to_contain_text("Console Team")
    expect(header).to_contain_text("admin")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Apps").click()
    page.get_by_role("link", name="hello", exact=True).click()
    expect(page.get_by_role("heading", name="Versions")).to_be_visible()
    page.get_by_label(re.compile(r"^count\b")).fill("3")
    page.get_by_label(re.compile(r"^name\b")).fill("browser")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    run_id = run_id_of(page)

    run = deployed.team.run(run_id)
    assert run["input"] == {"name": "browser", "count": 3}  # typed: 3 is an integer
    log = page.get_by_role("log", name="Log lines")
    expect(log).to_contain_text("hello, browser! (3/3)", timeout=RUN_TIMEOUT_MS)
    expect_status(page, "completed")
    # stdout and stderr are told apart.
    expect(page.locator(".log .line.stderr")).to_contain_text(f"run {run_id} of hello")
    expect(page.locator(".log .line.stdout").first).to_contain_text("hello, browser! (1/3)")
    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)


def test_a_wrong_value_is_refused_with_the_apis_message(
    deployed: ConsoleStack, signed_in: Page
) -> None:
    page = signed_in
    page.goto("/apps/hello")
    page.get_by_label(re.compile(r"^count\b")).fill("three")
    page.get_by_role("button", name="Start run").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("'three' is not of type 'integer'")
    # The same message as the JSON API's.
    api = deployed.team.post("/api/v1/apps/hello/runs", json={"input": {"count": "three"}})
    assert api.status_code == 400
    expect(alert).to_contain_text(api.json()["error"]["message"])
    # What was typed is kept.
    expect(page.get_by_label(re.compile(r"^count\b"))).to_have_value("three")


def test_log_lines_appear_live_and_user_text_is_escaped(
    deployed: ConsoleStack, signed_in: Page
) -> None:
    page = signed_in
    start_from_form(page, "sleeper", lines="12", pause="0.4")
    log = page.get_by_role("log", name="Log lines")
    expect(log).to_contain_text("tick 2", timeout=RUN_TIMEOUT_MS)
    # Seen while the run still runs: later lines are yet to come.
    assert "tick 12" not in log.inner_text()
    expect(page.locator("#run-status .status")).to_have_text(re.compile("running|leased"))
    expect(log).to_contain_text("tick 12", timeout=RUN_TIMEOUT_MS)
    expect(log).to_contain_text("<script>window.pwned = 1</script><b>bold?</b>")
    expect_status(page, "completed")
    assert page.evaluate("window.pwned") is None
    assert page.locator(".log b").count() == 0


def test_a_sleeping_run_is_cancelled_from_its_page_then_rerun(
    deployed: ConsoleStack, signed_in: Page
) -> None:
    page = signed_in
    origin = start_from_form(page, "sleeper", lines="200", pause="0.5")
    expect(page.get_by_role("log", name="Log lines")).to_contain_text(
        "tick 1", timeout=RUN_TIMEOUT_MS
    )
    page.get_by_role("button", name="Cancel run").click()
    expect_status(page, "cancelled", timeout=30_000)
    assert deployed.team.run(origin)["status"] == "cancelled"

    page.get_by_label("on version").select_option("1")
    page.get_by_role("button", name="Rerun").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    rerun = run_id_of(page)
    assert rerun != origin
    link = page.get_by_role("link", name=f"run #{origin}")
    expect(link).to_be_visible()
    body = deployed.team.run(rerun)
    assert body["rerun_of"] == origin
    assert body["input"] == deployed.team.run(origin)["input"]
    page.get_by_role("button", name="Cancel run").click()
    expect_status(page, "cancelled", timeout=30_000)
    link.click()
    assert run_id_of(page) == origin


def test_runs_page_filters_and_refreshes_itself(deployed: ConsoleStack, signed_in: Page) -> None:
    page = signed_in
    page.goto("/runs?app=sleeper")
    expect(page.get_by_label("App")).to_have_value("sleeper")
    rows_before = page.locator("tbody tr").count()
    # A run started elsewhere appears without a reload while runs are active.
    first = deployed.team.create_run("sleeper", input={"lines": 6, "pause": 0.5})
    page.reload()
    second = deployed.team.create_run("sleeper", input={"lines": 1, "pause": 0})
    expect(page.get_by_role("link", name=f"#{second['run_id']}", exact=True)).to_be_visible(
        timeout=10_000
    )
    assert page.locator("tbody tr").count() >= rows_before + 2
    # The filter below must have a completed run to show, whichever tests ran before.
    wait_for(
        lambda: deployed.team.run(second["run_id"])["status"] == "completed",
        timeout=60,
        what="the second sleeper run to complete",
    )
    page.get_by_label("Status").select_option("completed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=completed"))
    statuses = page.locator("tbody .status").all_inner_texts()
    assert statuses and set(statuses) == {"completed"}
    wait_for(
        lambda: deployed.team.run(first["run_id"])["status"] == "completed",
        timeout=60,
        what="the first sleeper run to complete",
    )


def test_tokens_create_shows_the_secret_once_and_revoke_works(
    deployed: ConsoleStack, signed_in: Page
) -> None:
    page = signed_in
    page.goto("/tokens")
    page.get_by_label("Name").fill("from-console")
    page.get_by_label("Role").select_option("member")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_label("New token").input_value()
    assert secret.startswith("mtk_")
    me = check(deployed.http.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}), 200)
    page.get_by_role("button", name="Copy").click()
    page.goto("/tokens")
    assert secret not in page.content()
    page.get_by_role("button", name=re.compile(rf"Revoke token {me['token_id']}\b")).click()
    expect(
        page.get_by_role("row", name=re.compile(rf"^{me['token_id']} from-console"))
    ).to_contain_text("revoked")
    revoked = deployed.http.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert revoked.status_code == 401


def test_a_member_gets_403_on_admin_pages(deployed: ConsoleStack, page: Page) -> None:
    sign_in_with_token(page, member_token(deployed.team))
    page.wait_for_url(re.compile(r"/$"))
    expect(page.get_by_role("banner")).to_contain_text("member")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Tokens")).to_have_count(0)
    for path in ("/tokens", "/runners"):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("alert")).to_contain_text("admins")
    # Forms are refused too, not only pages.
    page.goto("/")
    csrf = page.locator("input[name=csrf_token]").first.input_value()
    posted = page.request.post("/tokens", form={"csrf_token": csrf, "name": "x", "role": "admin"})
    assert posted.status == 403
    response = page.goto("/runs")
    assert response is not None and response.status == 200


def test_another_teams_run_is_404(deployed: ConsoleStack, signed_in: Page) -> None:
    other = TeamClient.bootstrap(deployed.http, "other-team", BOOTSTRAP_TOKEN)
    other.deploy("hello", _hello_archive())
    theirs = other.create_run("hello", environment="nowhere")  # stays queued
    for path in (f"/runs/{theirs['run_id']}", f"/runs/{theirs['run_id']}/log.txt"):
        response = signed_in.goto(path)
        assert response is not None and response.status == 404, path
    expect(signed_in.get_by_role("heading", name="Not found")).to_be_visible()
    cancel = signed_in.request.post(
        f"/runs/{theirs['run_id']}/cancel",
        form={"csrf_token": _csrf(signed_in)},
    )
    assert cancel.status == 404
    assert other.run(theirs["run_id"])["status"] == "queued"
    check(other.post(f"/api/v1/runs/{theirs['run_id']}/cancel"), 200)


def test_a_form_without_its_csrf_token_is_refused(deployed: ConsoleStack, signed_in: Page) -> None:
    run = deployed.team.create_run("hello", environment="nowhere")  # stays queued
    for form in ({}, {"csrf_token": "forged"}):
        response = signed_in.request.post(f"/runs/{run['run_id']}/cancel", form=form)
        assert response.status == 403
    assert deployed.team.run(run["run_id"])["status"] == "queued"
    response = signed_in.request.post(
        f"/runs/{run['run_id']}/cancel", form={"csrf_token": _csrf(signed_in)}
    )
    assert response.ok
    assert deployed.team.run(run["run_id"])["status"] == "cancelled"


def test_sign_out_ends_the_session_server_side(
    deployed: ConsoleStack, signed_in: Page, browser: Browser
) -> None:
    cookies = signed_in.context.cookies()
    session = next(c for c in cookies if c["name"] == "mt_console")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert "mtk_" not in session["value"]
    signed_in.get_by_role("button", name="Sign out").click()
    signed_in.wait_for_url(re.compile(r"/signin"))
    # The old cookie, replayed from another browser, is refused.
    replay = browser.new_context(base_url=deployed.url, viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        replay.add_cookies([session])  # type: ignore[list-item]
        page = replay.new_page()
        page.goto("/runs")
        expect(page).to_have_url(re.compile(r"/signin\?next=/runs"))
    finally:
        replay.close()


def test_revoking_the_sessions_token_ends_the_session(deployed: ConsoleStack, page: Page) -> None:
    token = member_token(deployed.team)
    sign_in_with_token(page, token)
    page.wait_for_url(re.compile(r"/$"))
    me = check(deployed.http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}), 200)
    check(deployed.team.delete(f"/api/v1/tokens/{me['token_id']}"), 200)
    page.goto("/runs")
    expect(page).to_have_url(re.compile(r"/signin"))


def test_wrong_password_is_refused_without_saying_which_part(
    page: Page, stack: ConsoleStack
) -> None:
    page.goto("/signin")
    page.get_by_label("Team", exact=True).fill(TEAM)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("invalid slug or password")
    page.get_by_label("Team", exact=True).fill("no-such-team")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("invalid slug or password")


def test_pages_at_phone_width(deployed: ConsoleStack, signed_in: Page, tmp_path: Path) -> None:
    page = signed_in
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", "/runs", "/apps/hello"):
        page.goto(path)
        # Nothing but tables (which scroll inside their card) is wider than the screen.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
        page.screenshot(path=str(tmp_path / f"phone{path.replace('/', '_')}.png"), full_page=True)


def _csrf(page: Page) -> str:
    page.goto("/")
    return page.locator("input[name=csrf_token]").first.input_value()


def _hello_archive() -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in ("Towerfile", "main.py"):
            archive.add(EXAMPLES / "hello" / name, arcname=name)
    return buffer.getvalue()


README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console-run.png"


def test_readme_screenshot(deployed: ConsoleStack, signed_in: Page, tmp_path: Path) -> None:
    """The README's picture of a run page. Written to docs/ with
    MINITOWER_UPDATE_SCREENSHOTS=1 (then commit it), else to the test's folder, so that
    a plain test run never changes the working tree."""
    import os

    page = signed_in
    run_id = start_from_form(page, "hello", count="5", name="MiniTower")
    expect_status(page, "completed")
    expect(page.get_by_role("log", name="Log lines")).to_contain_text(f"run {run_id} of hello")
    update = os.environ.get("MINITOWER_UPDATE_SCREENSHOTS") == "1"
    target = README_SCREENSHOT if update else tmp_path / README_SCREENSHOT.name
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


def test_a_100000_line_log_stays_usable(deployed: ConsoleStack, signed_in: Page) -> None:
    page = signed_in
    run = deployed.team.create_run("sleeper", input={"lines": 100_000, "pause": 0})
    wait_for(
        lambda: deployed.team.run(run["run_id"])["status"] == "completed",
        timeout=180,
        what="the 100,000-line run to complete",
    )
    page.goto(f"/runs/{run['run_id']}")
    expect(page.locator("#log-count")).to_have_text("100,002 lines", timeout=60_000)
    log = page.get_by_role("log", name="Log lines")
    # Following the tail: the last lines are shown, and only a window of lines is in the page.
    # (The stderr line's place among stdout's is the order the runner read the pipes in.)
    expect(log).to_contain_text("tick 100000")
    assert page.locator(".log .line").count() < 200
    log.evaluate("element => { element.scrollTop = 0; }")
    expect(page.locator(".log .line .tx").first).to_have_text(re.compile(r"^(tick 1|to stderr)$"))
    expect(page.get_by_label("Follow")).not_to_be_checked()
    log.evaluate("element => { element.scrollTop = 50_000 * 20; }")
    expect(log).to_contain_text("tick 50000")
    download = page.request.get(f"/runs/{run['run_id']}/log.txt")
    text = download.text()
    assert text.count("\n") == 100_002 and "\n[stderr] to stderr\n" in "\n" + text


def test_apps_create_disable_and_enable(deployed: ConsoleStack, signed_in: Page) -> None:
    page = signed_in
    run = deployed.team.create_run("hello")
    wait_for(
        lambda: deployed.team.run(run["run_id"])["status"] == "completed",
        timeout=RUN_TIMEOUT_MS / 1000,
        what="a run of hello to complete",
    )
    page.goto("/apps")
    expect(page.get_by_role("row", name=re.compile(r"^hello\b"))).to_contain_text("completed")
    page.get_by_label("Name (slug)").fill("Not A Slug")
    page.get_by_label("Description").fill("made in the browser")
    # The browser's own pattern check would stop the form: submit past it, as a script could.
    page.locator("form.stack").evaluate("form => form.noValidate = true")
    page.get_by_role("button", name="Create app").click()
    expect(page.get_by_role("alert")).to_contain_text("slug")
    page.get_by_label("Name (slug)").fill("from-browser")
    page.get_by_role("button", name="Create app").click()
    page.wait_for_url(re.compile(r"/apps/from-browser$"))
    expect(page.get_by_text("This app has no version yet")).to_be_visible()
    page.get_by_role("button", name="Disable app").click()
    expect(page.get_by_role("button", name="Enable app")).to_be_visible()
    assert check(deployed.team.get("/api/v1/apps/from-browser"), 200)["disabled"] is True
    page.get_by_role("button", name="Enable app").click()
    expect(page.get_by_role("button", name="Disable app")).to_be_visible()
    assert check(deployed.team.get("/api/v1/apps/from-browser"), 200)["disabled"] is False
    page.goto("/apps")
    expect(page.get_by_role("row", name=re.compile(r"^from-browser\b"))).to_contain_text(
        "never run"
    )
