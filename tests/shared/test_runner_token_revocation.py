"""Revoking runner tokens: the named runners (or all) stop matching any token at once,
keep their ids (so a runner that registers again keeps its lease), and a second
revocation finds nothing left to revoke."""

from sqlalchemy import Engine
from sqlmodel import select

from minitower_shared.db import read_session, write_session
from minitower_shared.models import Runner
from minitower_shared.store import runners as runner_store
from minitower_shared.tokens import RUNNER_TOKEN_PREFIX, hash_token, new_token
from tests.support.seed import add_runner


def _register(engine: Engine, name: str) -> tuple[int, str]:
    token = new_token(RUNNER_TOKEN_PREFIX)
    return add_runner(engine, name, token=token), token


def _runner_of(engine: Engine, token: str) -> Runner | None:
    with read_session(engine) as session:
        return runner_store.find_runner_by_token(session, hash_token(token))


def test_revoking_named_runners_leaves_the_others_alone(engine: Engine) -> None:
    ids = {name: _register(engine, name) for name in ("a", "b", "c")}
    with write_session(engine) as session:
        revoked = runner_store.revoke_runner_tokens(session, ["a", "c", "nope"])
    assert [r.name for r in revoked] == ["a", "c"]
    assert _runner_of(engine, ids["a"][1]) is None
    assert _runner_of(engine, ids["c"][1]) is None
    kept = _runner_of(engine, ids["b"][1])
    assert kept is not None and kept.name == "b"
    with write_session(engine) as session:
        assert runner_store.revoke_runner_tokens(session, ["a"]) == []
    # Registering again under the same name: the same runner, a working token.
    again, token = _register(engine, "a")
    assert again == ids["a"][0]
    assert (found := _runner_of(engine, token)) is not None and found.id == again


def test_revoking_every_runner_gives_each_a_distinct_hash_no_token_matches(
    engine: Engine,
) -> None:
    tokens = [_register(engine, f"r{i}")[1] for i in range(5)]
    with write_session(engine) as session:
        revoked = runner_store.revoke_runner_tokens(session, None)
    assert sorted(r.name for r in revoked) == [f"r{i}" for i in range(5)]
    assert all(_runner_of(engine, token) is None for token in tokens)
    with read_session(engine) as session:
        hashes = [r.token_hash for r in session.exec(select(Runner))]
    assert len(set(hashes)) == 5
    assert all(h.startswith(runner_store.REVOKED_PREFIX) and len(h) == 64 for h in hashes)
