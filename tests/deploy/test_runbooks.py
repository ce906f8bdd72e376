"""The runbooks hang together: each task has one, the index lists them all, each says
when to use it, how to verify and how to roll back, and every command block a runbook
names is run by some test (``tests/support/runbooks.py``)."""

import re

import pytest

from tests.support.runbooks import ROOT, RUNBOOKS, steps

TASKS = (
    "install",
    "upgrade",
    "scale-and-drain",
    "backup-restore",
    "backup-restore-postgresql",
    "move-to-postgresql",
    "multi-host",
    "rotate-tokens",
    "rotate-secrets-key",
    "disk-full",
    "stuck-queued",
    "stuck-leased-running",
    "database-locked",
    "securing",
    "webhooks-failing",
)
SECTIONS = ("## When to use", "## Steps", "## Verify", "## Roll back")
_CALL = re.compile(r"""run_step\(\s*["']([a-z0-9-]+)["']\s*,\s*["']([a-z0-9-]+)["']""")


def _steps_run_by_tests() -> set[tuple[str, str]]:
    called: set[tuple[str, str]] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        called.update(_CALL.findall(path.read_text()))
    return called


def test_every_task_has_a_runbook_and_nothing_else_hides_there() -> None:
    present = {path.stem for path in RUNBOOKS.glob("*.md")}
    assert present == set(TASKS)


def test_the_index_links_every_runbook() -> None:
    index = (ROOT / "deploy" / "README.md").read_text()
    missing = [task for task in TASKS if f"runbooks/{task}.md" not in index]
    assert missing == []


@pytest.mark.parametrize("task", TASKS)
def test_runbook_has_its_sections_and_named_steps(task: str) -> None:
    text = (RUNBOOKS / f"{task}.md").read_text()
    assert [section for section in SECTIONS if section not in text] == []
    assert steps(task), f"{task}.md names no step that a test could run"


@pytest.mark.parametrize("task", TASKS)
def test_every_named_step_is_run_by_a_test(task: str) -> None:
    called = _steps_run_by_tests()
    never_run = sorted(name for name in steps(task) if (task, name) not in called)
    assert never_run == [], f"{task}.md steps that no test runs: {never_run}"


def test_tests_run_only_steps_that_exist() -> None:
    unknown = sorted(
        (task, name)
        for task, name in _steps_run_by_tests()
        if not (RUNBOOKS / f"{task}.md").exists() or name not in steps(task)
    )
    assert unknown == []


def test_runbooks_link_only_to_files_that_exist() -> None:
    broken = []
    for path in RUNBOOKS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            if not (path.parent / target).resolve().exists():
                broken.append(f"{path.name}: {target}")
    assert broken == []
