"""Who a process-isolated workload runs as, and the checks a shared runner makes at
start-up (minitower_runner.isolation)."""

import os
from pathlib import Path

import pytest

from minitower_runner import isolation
from minitower_runner.isolation import (
    IsolationRefused,
    WorkloadUser,
    check_reachable,
    remove_workspace,
    workload_user,
)
from tests.support.privileges import passable_folder


def test_a_bound_runner_or_one_trusting_all_teams_runs_workloads_as_itself() -> None:
    assert workload_user(shared=False, uid=64000, gid=64000, trust_all_teams=False) is None
    assert workload_user(shared=True, uid=64000, gid=64000, trust_all_teams=True) is None


def test_a_shared_runner_that_can_switch_runs_workloads_as_the_workload_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(isolation, "can_switch_uids", lambda: True)
    user = workload_user(shared=True, uid=64000, gid=64001, trust_all_teams=False)
    assert user == WorkloadUser(64000, 64001)


def test_a_shared_runner_that_cannot_switch_refuses_and_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(isolation, "can_switch_uids", lambda: False)
    with pytest.raises(IsolationRefused) as refused:
        workload_user(shared=True, uid=64000, gid=64000, trust_all_teams=False)
    message = str(refused.value)
    assert "cannot run workloads under another uid" in message
    for way_out in ("runner-tokens create", "MINITOWER_RUNNER_ISOLATION=docker", "as root"):
        assert way_out in message


@pytest.mark.parametrize(("uid", "gid"), [(0, 64000), (64000, 0), (os.geteuid(), 64000)])
def test_root_or_the_runners_own_uid_is_refused(
    monkeypatch: pytest.MonkeyPatch, uid: int, gid: int
) -> None:
    monkeypatch.setattr(isolation, "can_switch_uids", lambda: True)
    with pytest.raises(IsolationRefused, match="must differ"):
        workload_user(shared=True, uid=uid, gid=gid, trust_all_teams=False)


def test_a_folder_the_workload_user_cannot_pass_through_is_named() -> None:
    with passable_folder() as base:
        closed = base / "closed"
        (closed / "inside").mkdir(parents=True)
        os.chmod(closed, 0o700)
        user = WorkloadUser(64000, 64000)
        with pytest.raises(IsolationRefused) as refused:
            check_reachable(closed / "inside", user, "the venv cache")
        assert f"cannot pass through {closed.resolve()} (mode 0700)" in str(refused.value)
        os.chmod(closed, 0o711)
        check_reachable(closed / "inside", user, "the venv cache")


def test_a_workspace_is_removed_whatever_modes_its_workload_left(tmp_path: Path) -> None:
    workspace = tmp_path / "run-1-1-x"
    deep = workspace / "app" / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "f").write_text("x")
    for folder in (deep, deep.parent, deep.parent.parent):
        os.chmod(folder, 0)
    try:
        remove_workspace(workspace)
    finally:
        for folder in (deep.parent.parent, deep.parent, deep):
            if folder.exists():
                os.chmod(folder, 0o700)
    assert not workspace.exists()
