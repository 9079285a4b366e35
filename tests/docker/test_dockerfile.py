"""The Dockerfile and .dockerignore, parsed: variants, install, user, health check, start."""

from __future__ import annotations

import ast
import os
import re
import shlex
import tomllib

import pytest

from service.settings import Settings
from tests.docker.conftest import (
    ENTRYPOINT,
    REPO,
    Dockerfile,
    healthcheck_argv,
    healthcheck_options,
    parse_dockerfile,
)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile()


def _runs(stage) -> list[str]:
    return [" ".join(value.split()) for value in stage.values("RUN")]


def test_variant_build_argument_selects_cuda_or_cpu_python_stage(dockerfile: Dockerfile):
    args = dockerfile.global_args
    assert args["VARIANT"] == "cuda", "the CUDA image is the default"
    cuda, cpu = dockerfile.stage("python-cuda"), dockerfile.stage("python-cpu")
    assert cuda.base == "${CUDA_IMAGE}" and args["CUDA_IMAGE"].startswith("nvidia/cuda:")
    assert cpu.base == "${CPU_IMAGE}" and args["CPU_IMAGE"].startswith("python:3.11-slim")
    assert any("--python 3.11" in run for run in _runs(cuda)), "the CUDA image runs Python 3.11"
    # Both later stages are built on the stage that VARIANT names.
    assert dockerfile.stage("build").base == "python-${VARIANT}"
    assert dockerfile.final.alias == "runtime" and dockerfile.final.base == "python-${VARIANT}"


def test_torch_comes_from_the_index_of_the_variant_at_the_pyproject_pin(dockerfile: Dockerfile):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = [dep for dep in pyproject["project"]["dependencies"] if dep.startswith("torch")]
    assert pins == [f"torch=={dockerfile.global_args['TORCH_VERSION']}"]
    assert dockerfile.global_args["CPU_TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert re.fullmatch(
        r"https://download\.pytorch\.org/whl/cu\d+", dockerfile.global_args["CUDA_TORCH_INDEX"]
    )
    runs = _runs(dockerfile.stage("build"))
    torch_step = next(
        i for i, run in enumerate(runs) if 'pip install "torch==${TORCH_VERSION}"' in run
    )
    assert '--index-url "$index"' in runs[torch_step]
    assert 'cpu) index="$CPU_TORCH_INDEX"' in runs[torch_step]
    project_step = next(i for i, run in enumerate(runs) if "pip install /src" in run)
    assert torch_step < project_step, "torch first, so the project's pin is already satisfied"


def test_project_is_installed_from_pyproject_not_a_second_list(dockerfile: Dockerfile):
    build = dockerfile.stage("build")
    copies = [value.split() for value in build.values("COPY")]
    assert ["pyproject.toml", "README.md", "/src/"] in copies
    for package in ("service", "model_training"):
        assert [package, f"/src/{package}"] in copies
    installs = [run for run in _runs(build) if "pip install" in run]
    assert all("-r " not in run and "requirements" not in run for run in installs)
    assert not list(REPO.glob("requirements*.txt")), "dependencies live in pyproject.toml only"


def test_final_stage_runs_as_an_unprivileged_numeric_user(dockerfile: Dockerfile):
    users = dockerfile.final.values("USER")
    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0 and (not gid or (gid.isdigit() and int(gid) != 0))
    creates = " ".join(_runs(dockerfile.final))
    assert f"--uid {uid}" in creates


def test_healthcheck_asks_ready_on_the_configured_port(dockerfile: Dockerfile):
    (value,) = dockerfile.final.values("HEALTHCHECK")
    argv = healthcheck_argv(value)
    assert argv[:2] == ["python", "-c"], "python + urllib: no curl in the image"
    code = argv[2]
    ast.parse(code)
    assert "/ready" in code and "urllib" in code and "PORT" in code
    options = healthcheck_options(value)
    assert {"interval", "timeout", "start-period", "retries"} <= options.keys()


def test_listener_port_and_checkpoint_settings(dockerfile: Dockerfile):
    final = dockerfile.final
    assert final.values("EXPOSE") == ["8000"]
    env = final.env()
    assert env["HOST"] == "0.0.0.0" and env["PORT"] == "8000"
    assert env["PATH"].startswith("/opt/venv/bin:")
    # Installed into site-packages, the package's own default path would not exist.
    assert env["CELLCOUNT_CHECKPOINT"] == "/app/weights/unet32.safetensors"
    assert "--from=build /src/weights /app/weights" in final.values("COPY")
    assert (REPO / "weights" / "unet32.safetensors").is_file()
    # Longer than the request deadline: every admitted request ends inside the drain.
    assert int(env["GRACEFUL_TIMEOUT"]) > Settings().request_timeout_s


def test_entrypoint_is_the_start_script_that_make_serve_runs(dockerfile: Dockerfile):
    final = dockerfile.final
    assert final.values("ENTRYPOINT") == ['["/app/docker/entrypoint.sh"]'], "exec form"
    assert "--from=build /src/docker/entrypoint.sh /app/docker/entrypoint.sh" in final.values(
        "COPY"
    )
    assert "docker/entrypoint.sh /src/docker/entrypoint.sh" in dockerfile.stage("build").values(
        "COPY"
    )
    assert not final.values("CMD"), "the script takes no arguments from the image"
    assert final.values("STOPSIGNAL") in ([], ["SIGTERM"])

    makefile = (REPO / "Makefile").read_text()
    serve = re.search(r"^serve:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert serve is not None and "./docker/entrypoint.sh" in serve.group(1)


def test_start_script_execs_python_so_signals_reach_uvicorn():
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert os.access(ENTRYPOINT, os.X_OK)
    commands = [line.strip() for line in text.splitlines() if line.strip()]
    commands = [line for line in commands if not line.startswith("#")]
    assert shlex.split(commands[-1])[:4] == ["exec", "python", "-m", "service.serve"]


# ---- .dockerignore -----------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif char == "*":
            out, i = out + "[^/]*", i + 1
        elif char == "?":
            out, i = out + "[^/]", i + 1
        elif char == "[":
            end = pattern.index("]", i)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out, i = out + "[" + ("^" + body[1:] if body.startswith("^") else body) + "]", end + 1
        else:
            out, i = out + re.escape(char), i + 1
    return re.compile(out)


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def sent_to_builder(path: str) -> bool:
    """Whether the build context contains ``path`` (the last matching rule wins)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in _dockerignore_rules():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return not excluded


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "runs/unet32/history.json",
        "data/images/a.png",
        ".device-data/x.bin",
        ".whl/torch.whl",
        ".pytest_cache/v/cache",
        ".ruff_cache/CACHEDIR.TAG",
        "service/__pycache__/app.cpython-311.pyc",
        "model_training/train.pyc",
        "cellcount.egg-info/PKG-INFO",
        "tests/service/api/test_api.py",
        "bench/service_throughput.py",
    ],
)
def test_dockerignore_keeps_out(path: str):
    assert not sent_to_builder(path)


def test_dockerignore_sends_everything_the_dockerfile_copies(dockerfile: Dockerfile):
    sources: list[str] = []
    for stage in dockerfile.stages:
        for value in stage.values("COPY"):
            words = value.split()
            if any(word.startswith("--from=") for word in words):
                continue
            sources += [word for word in words[:-1] if not word.startswith("--")]
    assert sources
    for source in sources:
        root = REPO / source
        assert root.exists(), source
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        files = [p for p in files if "__pycache__" not in p.parts]
        assert files, source
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            assert sent_to_builder(relative), f"{relative} is copied but not sent to the builder"
