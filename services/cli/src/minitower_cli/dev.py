"""``minitower dev``: the whole stack as local processes, in one command.

It migrates the database, then starts ``minitowerd``, ``minitower-reaper``,
``minitower-scheduler`` and N
``minitower-runner`` processes (the console scripts installed next to ``minitower``),
with every piece of state in one folder (``./.minitower/`` by default, the same layout
``scripts/run-local`` uses): the database, the objects, the venv cache, the runners'
data, the generated secrets (``secrets.env``), the ``dev`` team's token
(``dev-token``) and its console password (``console-password``), which the banner prints
with the console's URL. Their output is shown prefixed by process.

Ctrl-C or SIGTERM stops them in order: the runners first (each finishes or hands back
its run), then the reaper and the API; anything still alive after its grace period is
killed. Each child also asks the kernel for SIGTERM should ``minitower dev`` itself die
(``PR_SET_PDEATHSIG``), so not even a SIGKILL leaves a process behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import httpx
from rich.text import Text

from minitower_cli.config import (
    PROFILE_ENV,
    SERVER_ENV,
    TOKEN_ENV,
    Profile,
    config_path,
    load_config,
    save_config,
)
from minitower_cli.errors import EXIT_API, CliError, UsageError
from minitower_cli.output import Output
from minitower_shared.schemas import (
    BootstrapResult,
    Me,
    RunnerRegistrationTokenCreated,
    RunnerRegistrationTokenList,
)
from minitower_shared.secret_box import generate_key

SECRETS_FILE = "secrets.env"
TOKEN_FILE = "dev-token"
# The dev team's runner registration token ("<id> <secret>"): the local runners are
# bound to the dev team, so they need not run workloads under another uid.
RUNNER_REGISTRATION_FILE = "runner-registration-token"
# The dev team's console password: generated on the first start and kept, so that the
# first sign-in in the browser is one step (the banner prints it).
PASSWORD_FILE = "console-password"
DEV_PROFILE = "dev"
READY_TIMEOUT = 60.0
MIGRATE_TIMEOUT = 120.0
# Runners finish their current run for this long when stopped (unless the environment
# sets MINITOWER_DRAIN_TIMEOUT): long enough for a quick run, short enough for Ctrl-C.
DEV_DRAIN_TIMEOUT = "10s"
RUNNER_STOP_GRACE = 30.0
SERVICE_STOP_GRACE = 10.0

# Handed to the API alone: the runners get their registration token separately, and
# never the key of the secrets at rest.
_SECRET_NAMES = (
    "MINITOWER_BOOTSTRAP_TOKEN",
    "MINITOWER_RUNNER_REGISTRATION_TOKEN",
    "MINITOWER_SECRETS_KEY",
)
_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta")

# Run by the child itself before it becomes the real program: SIGTERM when the parent
# dies (kept across exec), and exit at once if the parent is already gone.
_EXEC_WITH_PDEATHSIG = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.argv[2], sys.argv[2:])
"""


@dataclass(frozen=True)
class DevOptions:
    port: int
    runners: int
    state_dir: Path
    team: str
    login: bool
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    pump: threading.Thread


@dataclass
class Stack:
    options: DevOptions
    output: Output
    children: list[Child] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    signals_seen: int = 0
    _print_lock: threading.Lock = field(default_factory=threading.Lock)

    # --- processes -----------------------------------------------------------------

    def spawn(self, name: str, program: str, args: list[str], env: dict[str, str]) -> Child:
        command = [
            sys.executable,
            "-c",
            _EXEC_WITH_PDEATHSIG,
            str(os.getpid()),
            find_program(program),
            *args,
        ]
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=self.options.state_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C at the terminal reaches only `minitower dev`,
            # which stops the children in order.
            start_new_session=True,
        )
        colour = _COLOURS[len(self.children) % len(_COLOURS)]
        assert proc.stdout is not None
        pump = threading.Thread(
            target=self._pump, args=(name, colour, proc.stdout), name=f"log-{name}", daemon=True
        )
        pump.start()
        child = Child(name, proc, pump)
        self.children.append(child)
        return child

    def _pump(self, name: str, colour: str, stream: IO[bytes]) -> None:
        prefix = Text(f"{name:<9}│ ", style=colour)
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                with self._print_lock:
                    self.output.out.print(prefix + Text(line), soft_wrap=True)
        except (OSError, ValueError):
            pass  # stdout went away: keep draining is pointless, the process goes on
        finally:
            stream.close()

    def say(self, message: str | Text) -> None:
        with self._print_lock:
            self.output.out.print(message, soft_wrap=True)

    def stop_all(self) -> None:
        """Runners first (they report their runs to the API), then reaper and API. A
        signal arriving meanwhile (a second Ctrl-C) kills whatever is left at once."""
        patience = self.signals_seen
        runners = [c for c in self.children if c.name.startswith("local-")]
        services = [c for c in self.children if c not in runners]
        for group, grace in ((runners, RUNNER_STOP_GRACE), (services, SERVICE_STOP_GRACE)):
            alive = [c for c in group if c.proc.poll() is None]
            for child in alive:
                _signal(child.proc, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while any(c.proc.poll() is None for c in alive):
                if self.signals_seen > patience:
                    self.say(Text("killing everything", style="yellow"))
                    self._kill(self.children)
                    break
                if time.monotonic() > deadline:
                    self._kill(alive, why="did not stop in time: killing it")
                    break
                time.sleep(0.05)
        self._kill(self.children)
        for child in self.children:
            child.proc.wait()
        for child in self.children:
            child.pump.join(timeout=2)

    def _kill(self, group: list[Child], why: str | None = None) -> None:
        for child in group:
            if child.proc.poll() is None:
                if why:
                    self.say(Text(f"{child.name} {why}", style="yellow"))
                _signal(child.proc, signal.SIGKILL)

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def check_stop(self) -> None:
        if self.stop_requested.is_set():
            raise _Stopped


class _Stopped(Exception):
    """A signal arrived while the stack was starting."""


def _signal(proc: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)


def find_program(name: str) -> str:
    """A console script of the environment ``minitower`` runs in (else on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise UsageError(
            f"{name} is not installed next to minitower ({beside.parent}): `minitower dev` "
            "needs the whole kit (minitower-api, minitower-reaper, minitower-scheduler, "
            "minitower-runner)"
        )
    return found


# --- state ---------------------------------------------------------------------------


def load_secrets(state: Path) -> dict[str, str]:
    """The operator secrets, generated on the first start and kept (tokens stay valid)."""
    path = state / SECRETS_FILE
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key in _SECRET_NAMES and value:
                values[key] = value
    if all(name in values for name in _SECRET_NAMES):
        return values
    for name in _SECRET_NAMES:
        # A state folder from before secrets gets its key now: it holds no secrets yet.
        if name == "MINITOWER_SECRETS_KEY":
            values.setdefault(name, generate_key())
        values.setdefault(name, secrets.token_urlsafe(24))
    _write_private(path, "".join(f"{name}={values[name]}\n" for name in _SECRET_NAMES))
    return values


def _write_private(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temp, 0o600)
    os.replace(temp, path)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    # The CLI's own settings mean nothing to the services (and one is a secret).
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in (TOKEN_ENV, PROFILE_ENV, SERVER_ENV, *_SECRET_NAMES)
    }
    # The services' output goes to a pipe (JSON by default) but is read by a person.
    log_format = os.environ.get("MINITOWER_LOG_FORMAT", "console")
    return {**base, "PYTHONUNBUFFERED": "1", "MINITOWER_LOG_FORMAT": log_format, **extra}


def wait_ready(stack: Stack, api: Child, url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(timeout=2) as http:
        while True:
            stack.check_stop()
            code = api.proc.poll()
            if code is not None:
                raise CliError(f"the API exited with code {code} before it was ready (see above)")
            try:
                if http.get(f"{url}/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise CliError(f"the API at {url} was not ready after {READY_TIMEOUT:.0f}s")
            time.sleep(0.1)


def console_password(state: Path) -> tuple[str, bool]:
    """The dev team's console password (kept in the state folder) and whether it is new."""
    path = state / PASSWORD_FILE
    if path.exists():
        saved = path.read_text(encoding="utf-8").strip()
        if saved:
            return saved, False
    password = secrets.token_urlsafe(12)
    _write_private(path, password + "\n")
    return password, True


def team_token(url: str, state: Path, team: str, bootstrap_token: str) -> tuple[str, bool]:
    """The dev team's admin token (kept in the state folder) and whether it is new. A
    new token also sets the team's console password (``console_password``)."""
    path = state / TOKEN_FILE
    password, new_password = console_password(state)
    with httpx.Client(base_url=url, timeout=10) as http:
        if path.exists() and not new_password:
            saved = path.read_text(encoding="utf-8").strip()
            check = http.get("/api/v1/me", headers={"Authorization": f"Bearer {saved}"})
            if check.status_code == 200 and Me.model_validate_json(check.content).team_slug == team:
                return saved, False
        answer = http.post(
            "/api/v1/bootstrap/team",
            json={"slug": team, "name": team.title(), "password": password},
            headers={"Authorization": f"Bearer {bootstrap_token}"},
        )
    if answer.status_code not in (200, 201):
        raise CliError(
            f"could not bootstrap team {team!r}: HTTP {answer.status_code} {answer.text}"
        )
    token = BootstrapResult.model_validate_json(answer.content).token
    _write_private(path, token + "\n")
    return token, True


def runner_registration_token(url: str, state: Path, admin_token: str) -> str:
    """The dev team's runner registration token, kept in the state folder; a new one
    when it is missing or was revoked."""
    path = state / RUNNER_REGISTRATION_FILE
    headers = {"Authorization": f"Bearer {admin_token}"}
    tokens_path = "/api/v1/runner-registration-tokens"
    with httpx.Client(base_url=url, timeout=10) as http:
        if path.exists():
            saved_id, _, saved = path.read_text(encoding="utf-8").strip().partition(" ")
            listed = http.get(tokens_path, headers=headers, params={"limit": 200})
            if listed.status_code == 200 and any(
                str(t.registration_token_id) == saved_id and t.revoked_at is None
                for t in RunnerRegistrationTokenList.model_validate_json(
                    listed.content
                ).registration_tokens
            ):
                return saved
        answer = http.post(tokens_path, json={"name": "minitower dev"}, headers=headers)
    if answer.status_code != 201:
        raise CliError(
            f"could not create a runner registration token: HTTP {answer.status_code} {answer.text}"
        )
    created = RunnerRegistrationTokenCreated.model_validate_json(answer.content)
    _write_private(path, f"{created.registration_token_id} {created.token}\n")
    return created.token


def save_dev_profile(url: str, token: str) -> tuple[Path, bool]:
    """Store the ``dev`` profile; it becomes the default only if there is none yet."""
    path = config_path()
    config = load_config(path)
    config.profiles[DEV_PROFILE] = Profile(server_url=url, token=token)
    if config.default_profile is None or config.default_profile not in config.profiles:
        config.default_profile = DEV_PROFILE
    save_config(path, config)
    return path, config.default_profile == DEV_PROFILE


def _shown_command() -> str:
    """How the user can call this CLI again: ``minitower`` if that is what PATH finds."""
    me = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("minitower")
    if me is None or (found is not None and Path(found).resolve() == me):
        return "minitower"
    try:
        return str(Path(sys.argv[0]).absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(Path(sys.argv[0]).absolute())


# --- the command ---------------------------------------------------------------------


def run_dev(options: DevOptions, output: Output) -> int:
    state = options.state_dir
    try:
        state.mkdir(parents=True, exist_ok=True)
        state.chmod(0o700)
    except OSError as exc:
        raise UsageError(f"cannot use {state} as the state folder: {exc.strerror}") from exc
    if not port_free(options.host, options.port):
        raise UsageError(
            f"port {options.port} on {options.host} is in use (another `minitower dev` or "
            "scripts/run-local?): stop it, or pass --port"
        )
    for program in ("minitowerd", "minitower-reaper", "minitower-scheduler", "minitower-runner"):
        find_program(program)
    values = load_secrets(state)
    stack = Stack(options, output)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stack.signals_seen += 1
        stack.stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _serve(stack, values)
    except _Stopped:
        return 0
    finally:
        if stack.children:
            output.status("stopping the stack…")
            stack.stop_all()
            output.status("stopped")
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(stack: Stack, values: dict[str, str]) -> int:
    options = stack.options
    state = options.state_dir
    url = options.url
    db = {"MINITOWER_DB_PATH": str(state / "minitower.db")}
    migrate = subprocess.run(
        [find_program("minitowerd"), "migrate"],
        env=_child_env(db),
        cwd=state,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT,
        check=False,
    )
    if migrate.returncode != 0:
        raise CliError(f"`minitowerd migrate` failed: {(migrate.stderr or migrate.stdout).strip()}")
    stack.check_stop()
    api = stack.spawn(
        "api",
        "minitowerd",
        [],
        _child_env(
            {
                **db,
                **values,
                "MINITOWER_OBJECTS_DIR": str(state / "objects"),
                "MINITOWER_LISTEN_ADDR": f"{options.host}:{options.port}",
            }
        ),
    )
    wait_ready(stack, api, url)
    stack.spawn("reaper", "minitower-reaper", [], _child_env(db))
    stack.spawn("scheduler", "minitower-scheduler", [], _child_env(db))
    try:
        token, _new = team_token(url, state, options.team, values[_SECRET_NAMES[0]])
        registration = runner_registration_token(url, state, token)
    except httpx.HTTPError as exc:
        raise CliError(f"could not bootstrap team {options.team!r}: {exc}") from exc
    names = [f"local-{i}" for i in range(1, options.runners + 1)]
    for name in names:
        stack.spawn(
            name,
            "minitower-runner",
            [],
            _child_env(
                {
                    "MINITOWER_DRAIN_TIMEOUT": os.environ.get(
                        "MINITOWER_DRAIN_TIMEOUT", DEV_DRAIN_TIMEOUT
                    ),
                    "MINITOWER_SERVER_URL": url,
                    "MINITOWER_RUNNER_NAME": name,
                    # Bound to the dev team: handed only its runs, so its workloads may
                    # run as the developer. A state folder from before runners could be
                    # bound keeps its shared runners; they serve this one team alone.
                    "MINITOWER_RUNNER_REGISTRATION_TOKEN": registration,
                    "MINITOWER_RUNNER_TRUST_ALL_TEAMS": "true",
                    "MINITOWER_DATA_DIR": str(state / "runners" / name),
                    "MINITOWER_VENV_CACHE_DIR": str(state / "venvs"),
                }
            ),
        )
    profile_note = _login(stack, url, token)
    _banner(stack, token, names, profile_note)
    return _supervise(stack)


def _login(stack: Stack, url: str, token: str) -> str | None:
    """Save the dev profile; returns the --profile option the commands need, if any."""
    if not stack.options.login:
        return None
    path, is_default = save_dev_profile(url, token)
    stack.say(Text(f"saved profile '{DEV_PROFILE}' in {path}", style="bright_black"))
    return "" if is_default else f"--profile {DEV_PROFILE} "


def _banner(stack: Stack, token: str, runners: list[str], profile: str | None) -> None:
    options = stack.options
    me = _shown_command()
    token_file = options.state_dir / TOKEN_FILE
    password_file = options.state_dir / PASSWORD_FILE
    password = password_file.read_text(encoding="utf-8").strip()
    lines = [
        Text(""),
        Text.assemble(
            ("  MiniTower is running at ", "bold"),
            (options.url, "bold green"),
            f"  (API docs at {options.url}/docs)",
        ),
        Text.assemble(
            ("  console: ", "bold"),
            (f"{options.url}/", "bold green"),
            f"  sign in as team {options.team}, password {password}",
        ),
        Text(f"           (kept in {password_file})"),
        Text(f"  team:    {options.team}, admin token {token}"),
        Text(f"           (kept in {token_file})"),
        Text(f"  runners: {', '.join(runners) if runners else 'none (--runners 0)'}"),
        Text(f"  state:   {options.state_dir}"),
        Text(""),
        Text("  Next, in another terminal:", style="bold"),
    ]
    if profile is None:
        prefix = ""
        lines.append(Text(f"    export {SERVER_ENV}={options.url} {TOKEN_ENV}=$(cat {token_file})"))
    else:
        prefix = profile
    for command in (
        "deploy examples/hello",
        "run hello -p name=you --wait",
        "runs list",
        "logs RUN_ID",
    ):
        lines.append(Text(f"    {me} {prefix}{command}", style="cyan"))
    lines += [Text(""), Text("  Ctrl-C stops everything.", style="bold"), Text("")]
    for line in lines:
        stack.say(line)


def _supervise(stack: Stack) -> int:
    """Until a signal (exit 0) or a process ending on its own (exit 3)."""
    while not stack.stop_requested.wait(0.2):
        ended = stack.first_exited()
        if ended is not None:
            stack.output.error(
                f"{ended.name} exited with code {ended.proc.returncode}; stopping the others"
            )
            return EXIT_API
    return 0
