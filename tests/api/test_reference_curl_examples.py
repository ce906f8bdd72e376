"""The reference Go MiniTower's own ``docs/curl-examples.md`` (ryan-h265/mini-tower),
run as written against a live ``minitowerd``: its 21 requests, with only the host
(``http://localhost:8080``) pointed at the test's server and ``$TOKEN`` taken from the
signup answer, as the document says to.

The server runs with the document's settings: ``MINITOWER_BOOTSTRAP_TOKEN=secret`` (a
short secret, hence ``MINITOWER_ENV=dev``) and public signup on. The document's password
is ``secret``, six characters, so the server allows six
(``MINITOWER_MIN_PASSWORD_LENGTH=6``; the default of 8 refuses it with a 400 that says so).
"""

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.support.processes import LiveApi

# Transcribed from the reference's docs/curl-examples.md, in its order.
SIGNUP = """curl -sS -X POST http://localhost:8080/api/v1/teams/signup \\
  -H "Content-Type: application/json" \\
  -d '{"slug":"myteam","name":"My Team","password":"secret"}'"""

REQUESTS = [
    """curl -sS -X POST http://localhost:8080/api/v1/bootstrap/team \\
  -H "Authorization: Bearer secret" \\
  -H "Content-Type: application/json" \\
  -d '{"slug":"myteam","name":"My Team","password":"secret"}'""",
    """curl -sS -X POST http://localhost:8080/api/v1/teams/login \\
  -H "Content-Type: application/json" \\
  -d '{"slug":"myteam","password":"secret"}'""",
    """curl -sS http://localhost:8080/api/v1/me \\
  -H "Authorization: Bearer $TOKEN\"""",
    """curl -sS -X POST http://localhost:8080/api/v1/apps \\
  -H "Authorization: Bearer $TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{"slug":"hello-world","description":"A test app"}'""",
    """curl -sS http://localhost:8080/api/v1/apps \\
  -H "Authorization: Bearer $TOKEN\"""",
    """curl -sS http://localhost:8080/api/v1/apps/hello-world \\
  -H "Authorization: Bearer $TOKEN\"""",
    """tar -czf /tmp/myapp/artifact.tar.gz -C /tmp/myapp main.py Towerfile
curl -sS -X POST http://localhost:8080/api/v1/apps/hello-world/versions \\
  -H "Authorization: Bearer $TOKEN" \\
  -F "artifact=@/tmp/myapp/artifact.tar.gz\"""",
    """curl -sS http://localhost:8080/api/v1/apps/hello-world/versions \\
  -H "Authorization: Bearer $TOKEN\"""",
    """curl -sS -X POST http://localhost:8080/api/v1/apps/hello-world/runs \\
  -H "Authorization: Bearer $TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{"input":{"name":"MiniTower"}}'""",
    """curl -sS -X POST http://localhost:8080/api/v1/apps/hello-world/runs \\
  -H "Authorization: Bearer $TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{
    "input": {"name": "MiniTower"},
    "version_no": 1,
    "priority": 10,
    "max_retries": 3
  }'""",
    """curl -sS "http://localhost:8080/api/v1/apps/hello-world/runs?limit=10" \\
  -H "Authorization: Bearer $TOKEN\"""",
    """curl -sS "http://localhost:8080/api/v1/runs?limit=20&status=running&app=hello-world" \\
  -H "Authorization: Bearer $TOKEN\"""",
    """curl -sS http://localhost:8080/api/v1/runs/1 \\
  -H "Authorization: Bearer $TOKEN\"""",
    """curl -sS -X POST http://localhost:8080/api/v1/runs/1/cancel \\
  -H "Authorization: Bearer $TOKEN\"""",
    """curl -sS "http://localhost:8080/api/v1/runs/1/logs?after_seq=0" \\
  -H "Authorization: Bearer $TOKEN\"""",
    """curl -sS -X POST http://localhost:8080/api/v1/tokens \\
  -H "Authorization: Bearer $TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{"name":"ci-pipeline","role":"member"}'""",
    """curl -sS http://localhost:8080/api/v1/admin/runners \\
  -H "Authorization: Bearer $TOKEN\"""",
    "curl -sS http://localhost:8080/health",
    "curl -sS http://localhost:8080/ready",
]
METRICS = "curl -sS http://localhost:8080/metrics | grep minitower_runs"


def shell(command: str, api: LiveApi, token: str = "") -> str:
    done = subprocess.run(
        ["bash", "-c", "set -o pipefail\n" + command.replace("http://localhost:8080", api.url)],
        env={"PATH": "/usr/bin:/bin", "TOKEN": token},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def test_the_reference_curl_examples_work_as_written(
    make_live_api: Callable[[dict[str, str]], LiveApi], tmp_path: Path
) -> None:
    api = make_live_api(
        {
            "MINITOWER_ENV": "dev",
            "MINITOWER_BOOTSTRAP_TOKEN": "secret",
            "MINITOWER_PUBLIC_SIGNUP_ENABLED": "true",
            "MINITOWER_MIN_PASSWORD_LENGTH": "6",
        }
    )
    # The document's app: a Towerfile and main.py in /tmp/myapp (as it says).
    app_dir = Path("/tmp/myapp")
    app_dir.mkdir(exist_ok=True)
    (app_dir / "Towerfile").write_text('[app]\nname = "hello-world"\nscript = "main.py"\n')
    (app_dir / "main.py").write_text("print('hello')\n")

    signed_up = json.loads(shell(SIGNUP, api))
    assert signed_up["slug"] == "myteam" and signed_up["role"] == "admin", signed_up
    token = signed_up["token"]
    answers = []
    for command in REQUESTS:
        answer = json.loads(shell(command, api, token))
        assert "error" not in answer, (command, answer)
        answers.append(answer)
    assert "minitower_runs" in shell(METRICS, api, token)
    assert 1 + len(REQUESTS) + 1 == 21
    login, run = answers[1], answers[12]
    assert login["token"].startswith("mtk_") and login["role"] == "admin"
    assert run["run_id"] == 1 and run["input"] == {"name": "MiniTower"}
    assert answers[13]["status"] == "cancelled"
