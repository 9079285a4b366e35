"""service.settings: CELLCOUNT_* variables parsed once, with the refusals that say why."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, default_plan_cache_dir


def test_environment_variables_are_read_with_their_prefix(monkeypatch):
    monkeypatch.setenv("CELLCOUNT_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("CELLCOUNT_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("CELLCOUNT_API_KEY", "")
    settings = Settings()
    assert settings.max_batch_size == 8
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.api_key is None  # an empty key means no key, not a key of ""


def test_cors_origins_also_take_a_json_list():
    assert Settings(cors_origins='["https://a.example"]').cors_origins == ["https://a.example"]


def test_checkpoint_hash_is_normalised_or_refused():
    assert Settings(checkpoint_sha256=" " + "AB" * 32 + " ").checkpoint_sha256 == "ab" * 32
    assert Settings(checkpoint_sha256="").checkpoint_sha256 is None
    with pytest.raises(ValidationError, match="64 hexadecimal"):
        Settings(checkpoint_sha256="abc")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tile_size": 1000}, "max_tile_size must be a multiple of 16"),
        ({"tile_margin": 40}, "tile_margin must be a multiple of 16"),
        ({"max_tile_size": 64, "tile_margin": 32}, "exceed twice tile_margin"),
        ({"max_batch_size": 0}, "greater than or equal to 1"),
    ],
)
def test_geometry_that_cannot_work_is_refused(options, message):
    with pytest.raises(ValidationError, match=message):
        Settings(**options)


def test_plan_cache_dir_follows_xdg_and_an_empty_value_turns_it_off(monkeypatch, tmp_path):
    monkeypatch.delenv("CELLCOUNT_PLAN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_plan_cache_dir() == tmp_path / "cellcount"
    assert Settings().plan_cache_dir == tmp_path / "cellcount"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # unset in XDG's sense
    assert default_plan_cache_dir() == Path.home() / ".cache" / "cellcount"
    for off in ("", "  "):
        monkeypatch.setenv("CELLCOUNT_PLAN_CACHE_DIR", off)
        assert Settings().plan_cache_dir is None
    monkeypatch.setenv("CELLCOUNT_PLAN_CACHE_DIR", str(tmp_path / "plans"))
    assert Settings().plan_cache_dir == tmp_path / "plans"
