"""The plan cache file: round trip, atomic write, and files it must not trust."""

from __future__ import annotations

import json
import logging

from service.serving.plan import InferencePlan, PlanCache

KEY = {"checkpoint_sha256": "ab" * 32, "device": "cpu", "cores": 2, "max_batch_size": None}
PLAN = InferencePlan("fp32", False, 4, 2, 1, 2, True, [{"batch": 4, "tiles_per_second": 9.5}])


def test_a_stored_plan_reads_back_equal(tmp_path):
    cache = PlanCache(tmp_path / "nested" / "dir", KEY)
    assert cache.load() is None  # nothing stored yet: no warning needed
    cache.store(PLAN)
    assert PlanCache(tmp_path / "nested" / "dir", dict(KEY)).load() == PLAN
    assert [path.name for path in cache.path.parent.iterdir()] == [cache.path.name]  # no .tmp


def test_each_key_has_its_own_file(tmp_path):
    other = PlanCache(tmp_path, {**KEY, "max_batch_size": 8})
    assert other.path != PlanCache(tmp_path, KEY).path
    PlanCache(tmp_path, KEY).store(PLAN)
    assert other.load() is None


def test_corrupt_or_foreign_files_are_ignored_with_a_warning(tmp_path, caplog):
    cache = PlanCache(tmp_path, KEY)
    cache.store(PLAN)
    content = json.loads(cache.path.read_text())
    broken = {
        "cut short": cache.path.read_text()[:40],
        "another key": json.dumps({**content, "key": {**content["key"], "cores": 64}}),
        "wrong types": json.dumps({**content, "plan": {**content["plan"], "workers": "many"}}),
        "not an object": "[1, 2]",
    }
    for text in broken.values():
        cache.path.write_text(text)
        with caplog.at_level(logging.WARNING, logger="cellcount.service"):
            caplog.clear()
            assert cache.load() is None
        assert "ignored" in caplog.text and str(cache.path) in caplog.text


def test_an_unwritable_directory_only_warns(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = PlanCache(blocker / "cache", KEY)
    with caplog.at_level(logging.WARNING, logger="cellcount.service"):
        cache.store(PLAN)
    assert "not written" in caplog.text
    assert cache.load() is None


def test_the_file_is_readable_by_other_users(tmp_path):
    """Replicas sharing a cache volume may run as other users than the one that measured."""
    cache = PlanCache(tmp_path, KEY)
    cache.store(PLAN)
    assert cache.path.stat().st_mode & 0o777 == 0o644
