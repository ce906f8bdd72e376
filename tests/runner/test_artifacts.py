"""The artifact cache's bound: least recently used archives go first."""

import hashlib
import os
from pathlib import Path

from minitower_runner.artifacts import ArtifactCache


def archive(tmp_path: Path, name: str, size: int) -> tuple[Path, str]:
    path = tmp_path / name
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_the_least_recently_used_archive_is_evicted_past_the_bound(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "artifacts", max_bytes=2500)
    kept = []
    for i, when in enumerate((100, 200)):
        path, sha = archive(tmp_path, f"a{i}", 1000)
        kept.append((sha, cache.keep(1, sha, path)))
        os.utime(kept[-1][1], (when, when))
    # The older one is used again, so the newer one is now the least recently used.
    assert cache.find(1, kept[0][0]) == kept[0][1]
    path, sha = archive(tmp_path, "a2", 1000)
    newest = cache.keep(1, sha, path)
    assert newest.exists() and kept[0][1].exists()
    assert not kept[1][1].exists()
    assert cache.find(1, kept[1][0]) is None


def test_archives_are_kept_per_team(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "artifacts", max_bytes=10_000)
    path, sha = archive(tmp_path, "a", 100)
    cache.keep(1, sha, path)
    assert cache.find(1, sha) is not None
    assert cache.find(2, sha) is None


def test_an_archive_larger_than_the_cache_stays_where_it_is(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "artifacts", max_bytes=100)
    path, sha = archive(tmp_path, "big", 1000)
    assert cache.keep(1, sha, path) == path and path.exists()
    assert cache.find(1, sha) is None
