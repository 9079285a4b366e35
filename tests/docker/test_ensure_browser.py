"""tests/ensure_browser.sh (`make browser`): each way it brings a browser, run with stand-in
commands on PATH, so nothing is installed or downloaded."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.docker.conftest import REPO

SCRIPT = REPO / "tests" / "ensure_browser.sh"


def stand_in(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f'#!/bin/sh\necho {name} "$@" >> "$CALLS"\n{body}\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def bench(tmp_path: Path) -> dict:
    folder = tmp_path / "bin"
    folder.mkdir()
    return {"bin": folder, "calls": tmp_path / "calls", "chromium": tmp_path / "chromium"}


def run(bench: dict, uid: int, python_ok: bool = True) -> subprocess.CompletedProcess[str]:
    stand_in(bench["bin"], "id", f"echo {uid}")
    # The stand-in apt-get "installs" the browser where the script looks for it.
    stand_in(
        bench["bin"],
        "apt-get",
        f'[ "$1" = install ] && printf "#!/bin/sh\\n" > "{bench["chromium"]}" '
        f'&& chmod +x "{bench["chromium"]}"; exit 0',
    )
    python = stand_in(bench["bin"], "python", "exit 0" if python_ok else "exit 1")
    env = {
        **os.environ,
        "PATH": f"{bench['bin']}:{os.environ['PATH']}",
        "CALLS": str(bench["calls"]),
    }
    return subprocess.run(
        ["sh", str(SCRIPT), str(bench["chromium"]), str(python)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def calls(bench: dict) -> list[str]:
    return bench["calls"].read_text().splitlines() if bench["calls"].exists() else []


def test_a_present_browser_needs_nothing(bench):
    bench["chromium"].write_text("#!/bin/sh\n")
    bench["chromium"].chmod(0o755)
    result = run(bench, uid=1000)
    assert result.returncode == 0 and calls(bench) == [] and result.stdout == ""


def test_root_with_apt_get_installs_debians_chromium(bench):
    result = run(bench, uid=0)
    assert result.returncode == 0
    assert calls(bench) == ["id -u", "apt-get update -qq", "apt-get install -y -qq chromium"]


def test_without_root_playwright_brings_its_own(bench):
    result = run(bench, uid=1000)
    assert result.returncode == 0
    assert calls(bench) == ["id -u", "python -m playwright install chromium"]


def test_where_nothing_works_it_says_what_to_run_and_lets_the_tests_skip(bench):
    result = run(bench, uid=1000, python_ok=False)
    assert result.returncode == 0
    assert "apt-get install -y chromium" in result.stderr
    assert "-m playwright install chromium" in result.stderr
    assert "skipped" in result.stderr
