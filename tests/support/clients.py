"""Thin HTTP helpers that act as a team or as a runner against the API.

They work with FastAPI's TestClient and with an ``httpx.Client`` pointed at a live
server alike, and assert only the status they are asked to expect."""

from dataclasses import dataclass
from typing import Any

import httpx


def check(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: expected {status}, "
        f"got {response.status_code}: {response.text}"
    )
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return None


@dataclass
class TeamClient:
    http: httpx.Client
    token: str
    team_id: int

    @classmethod
    def bootstrap(cls, http: httpx.Client, slug: str, bootstrap_token: str) -> "TeamClient":
        body = check(
            http.post(
                "/api/v1/bootstrap/team",
                json={"slug": slug, "name": slug.title()},
                headers={"Authorization": f"Bearer {bootstrap_token}"},
            ),
            201,
        )
        return cls(http=http, token=body["token"], team_id=body["team_id"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, headers=self.headers, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.post(path, headers=headers, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.patch(path, headers=self.headers, **kwargs)

    def delete(self, path: str) -> httpx.Response:
        return self.http.delete(path, headers=self.headers)

    def create_app(self, slug: str = "hello") -> dict[str, Any]:
        result: dict[str, Any] = check(self.post("/api/v1/apps", json={"slug": slug}), 201)
        return result

    def upload(self, app: str, archive: bytes, **form: str) -> httpx.Response:
        return self.post(
            f"/api/v1/apps/{app}/versions",
            files={"artifact": ("app.tar.gz", archive, "application/gzip")},
            data=form,
        )

    def deploy(self, app: str, archive: bytes) -> dict[str, Any]:
        """Create the app if needed and upload a version."""
        if self.get(f"/api/v1/apps/{app}").status_code == 404:
            self.create_app(app)
        result: dict[str, Any] = check(self.upload(app, archive), 201)
        return result

    def create_run(self, app: str, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = check(self.post(f"/api/v1/apps/{app}/runs", json=body), 201)
        return result

    def run(self, run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = check(self.get(f"/api/v1/runs/{run_id}"), 200)
        return result


@dataclass
class Lease:
    run_id: int
    token: str
    body: dict[str, Any]


@dataclass
class RunnerClient:
    http: httpx.Client
    token: str
    runner_id: int
    name: str

    @classmethod
    def register(
        cls,
        http: httpx.Client,
        name: str,
        registration_token: str,
        environment: str = "default",
    ) -> "RunnerClient":
        response = http.post(
            "/api/v1/runners/register",
            json={"name": name, "environment": environment},
            headers={"Authorization": f"Bearer {registration_token}"},
        )
        assert response.status_code in (200, 201), response.text
        body = response.json()
        return cls(http=http, token=body["token"], runner_id=body["runner_id"], name=name)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def lease_response(self, wait_seconds: float = 0, *, start: bool = False) -> httpx.Response:
        body: dict[str, Any] = {"wait_seconds": wait_seconds}
        if start:
            body["start"] = True
        return self.http.post("/api/v1/runs/lease", json=body, headers=self.headers)

    def lease(self, wait_seconds: float = 0, *, start: bool = False) -> Lease | None:
        response = self.lease_response(wait_seconds, start=start)
        if response.status_code == 204:
            return None
        body = check(response, 200)
        return Lease(run_id=body["run_id"], token=body["lease_token"], body=body)

    def call(self, lease: Lease, method: str, action: str, json: Any = None) -> httpx.Response:
        return self.http.request(
            method,
            f"/api/v1/runs/{lease.run_id}/{action}",
            json=json,
            headers={**self.headers, "X-Lease-Token": lease.token},
        )

    def start(self, lease: Lease) -> httpx.Response:
        return self.call(lease, "POST", "start")

    def heartbeat(self, lease: Lease) -> httpx.Response:
        return self.call(lease, "POST", "heartbeat")

    def logs(self, lease: Lease, lines: list[dict[str, Any]]) -> httpx.Response:
        return self.call(lease, "POST", "logs", {"logs": lines})

    def result(self, lease: Lease, status: str, **extra: Any) -> httpx.Response:
        return self.call(lease, "POST", "result", {"status": status, **extra})

    def artifact(self, lease: Lease) -> httpx.Response:
        return self.call(lease, "GET", "artifact")
