"""Shared readers for the deployment files (Dockerfile, compose, Kubernetes) and the start script.

Nothing here needs Docker or a cluster: the files are parsed and checked against their schemas,
and the start script is run on this machine the way the container runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
COMPOSE = REPO / "docker" / "compose.yaml"
K8S = REPO / "docker" / "k8s"


@dataclass
class Stage:
    """One ``FROM`` block of the Dockerfile: its base, alias and instructions in order."""

    base: str
    alias: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]

    def env(self) -> dict[str, str]:
        """``ENV`` settings of this stage (``key=value`` form), later ones winning."""
        settings: dict[str, str] = {}
        for value in self.values("ENV"):
            for token in shlex.split(value):
                key, _, setting = token.partition("=")
                settings[key] = setting
        return settings


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, alias: str) -> Stage:
        return next(stage for stage in self.stages if stage.alias == alias)


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    """Split the parsed instructions into global ``ARG``s and stages."""
    parser = DockerfileParser(path=str(path))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for item in parser.structure:
        name, value = item["instruction"], item["value"].strip()
        if name == "COMMENT":
            continue
        if name == "FROM":
            words = [word for word in value.split() if not word.startswith("--")]
            upper = [word.upper() for word in words]
            alias = words[upper.index("AS") + 1] if "AS" in upper else None
            base = words[0]
            stages.append(Stage(base, alias))
        elif not stages:
            assert name == "ARG", f"only ARG may come before the first FROM, not {name}"
            key, _, default = value.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((name, value))
    return Dockerfile(global_args, stages)


def healthcheck_argv(value: str) -> list[str]:
    """The exec-form command of a ``HEALTHCHECK ... CMD [...]`` instruction."""
    _, _, command = value.partition("CMD")
    assert command.strip().startswith("["), "HEALTHCHECK must use the exec form"
    return json.loads(command)


def healthcheck_options(value: str) -> dict[str, str]:
    options, _, _ = value.partition("CMD")
    return dict(option.lstrip("-").split("=", 1) for option in options.split())


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: Any, environ: dict[str, str] | None = None) -> Any:
    """Compose's ``${NAME:-default}`` substitution, recursively (enough for these files)."""
    environ = environ or {}
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: environ.get(m["name"], m["default"] or ""), value)
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    return value


def k8s_documents() -> dict[str, list[dict[str, Any]]]:
    """Every Kubernetes object under docker/k8s (the kustomization excluded), by file name."""
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def k8s_object(kind: str) -> dict[str, Any]:
    found = [doc for docs in k8s_documents().values() for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def duration_seconds(text: str) -> float:
    """``45s``, ``1m30s``, ``300`` → seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", text)
    assert parts and "".join(a + b for a, b in parts) == text, f"not a duration: {text!r}"
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    return sum(float(number) * scale[unit] for number, unit in parts)


# ---- running the start script ------------------------------------------------------------------


def _pid_namespace_prefix() -> list[str]:
    """An ``unshare`` prefix that runs a command as PID 1 of its own PID namespace, if possible."""
    if shutil.which("unshare") is None:
        return []
    for prefix in (
        ["unshare", "--pid", "--fork", "--kill-child"],
        ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child"],
    ):
        probe = subprocess.run([*prefix, "sh", "-c", 'test "$$" = 1'], capture_output=True)
        if probe.returncode == 0:
            return prefix
    return []


PID1_PREFIX = _pid_namespace_prefix()


def _child_of(parent: int, timeout: float = 10.0) -> int:
    """The pid (as seen here) of ``parent``'s only child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                return int(stat.parent.name)
        time.sleep(0.02)
    raise RuntimeError(f"process {parent} started no child")


@dataclass
class RunningService:
    """The start script running as in the container; ``pid`` is the server's own process."""

    process: subprocess.Popen[bytes]
    pid: int
    url: str
    port: int
    log: Path
    as_pid1: bool

    def terminate(self) -> None:
        """SIGTERM to the server, as ``docker stop`` or the kubelet sends it."""
        os.kill(self.pid, signal.SIGTERM)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def start_entrypoint(
    port: int, workdir: Path, env: dict[str, str] | None = None, as_pid1: bool = True
) -> RunningService:
    """Run docker/entrypoint.sh with the container's settings, the project's venv first on PATH.

    The working directory holds no source (like /app in the image), the checkpoint is named by an
    absolute CELLCOUNT_CHECKPOINT (like the image's ENV), and where the machine allows it the
    server is PID 1 of a fresh PID namespace, as it is in a container.
    """
    venv_bin = str(Path(sys.executable).parent)
    environ = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        # The image installs the package; here the checkout stands in for site-packages.
        "PYTHONPATH": str(REPO),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "GRACEFUL_TIMEOUT": "10",
        "CELLCOUNT_CHECKPOINT": str(REPO / "weights" / "unet32.safetensors"),
        "CELLCOUNT_DEVICE": "cpu",
        # Pinned geometry keeps the warm-up measurement (and so start-up) short.
        "CELLCOUNT_MAX_BATCH_SIZE": "1",
        "CELLCOUNT_INFERENCE_WORKERS": "1",
        "CELLCOUNT_PLAN_CACHE_DIR": str(workdir / "plan-cache"),  # not the user's ~/.cache
        **(env or {}),
    }
    prefix = PID1_PREFIX if as_pid1 else []
    log = workdir / f"entrypoint-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*prefix, str(ENTRYPOINT)],
            cwd=workdir,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    pid = _child_of(process.pid) if prefix else process.pid
    return RunningService(process, pid, f"http://127.0.0.1:{port}", port, log, as_pid1=bool(prefix))


def wait_ready(service: RunningService, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"the service exited during start-up:\n{service.output()[-3000:]}")
        try:
            if httpx.get(f"{service.url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"not ready within {timeout} s:\n{service.output()[-3000:]}")
