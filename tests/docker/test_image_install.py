"""The image installs the project as a wheel (not editable): nothing the packages read may be lost.

The build context the Dockerfile copies to /src before `pip install /src` is rebuilt here and
turned into a wheel offline; every file of the packages (code and data, e.g. the web page's
static files) must be in it, or the image would miss what the checkout has.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.docker.conftest import REPO, parse_dockerfile


def _sources_copied_before_install() -> list[tuple[list[str], str]]:
    build = parse_dockerfile().stage("build")
    copies = []
    for name, value in build.instructions:
        if name == "RUN" and "pip install /src" in value:
            return copies
        if name == "COPY":
            *sources, destination = value.split()
            copies.append((sources, destination))
    raise AssertionError("the build stage never runs `pip install /src`")


def test_wheel_of_the_build_context_holds_every_package_file(tmp_path: Path):
    src = tmp_path / "src"
    packages: list[str] = []
    for sources, destination in _sources_copied_before_install():
        assert destination.startswith("/src")
        for source in sources:
            origin = REPO / source
            target = src / destination.removeprefix("/src").strip("/")
            if origin.is_dir():
                shutil.copytree(
                    origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
                packages.append(source)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
    assert sorted(packages) == ["model_training", "service"]

    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    command += ["--no-index", "--quiet", "-w", str(tmp_path / "dist"), str(src)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("cellcount-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())

    expected = {
        path.relative_to(src).as_posix()
        for package in packages
        for path in (src / package).rglob("*")
        if path.is_file()
    }
    missing = sorted(expected - in_wheel)
    assert not missing, f"not installed by `pip install /src`: {missing}"
