"""docker/compose.yaml against the Compose Specification schema, then what it must say."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources
from typing import Any

import jsonschema
import pytest

from tests.docker.conftest import (
    COMPOSE,
    REPO,
    duration_seconds,
    healthcheck_argv,
    interpolate,
    load_compose,
    parse_dockerfile,
)


def compose_spec_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema, as vendored by ``check-jsonschema`` (Apache-2.0)."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def _validate(document: dict[str, Any]) -> None:
    schema = compose_spec_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator_class(schema).validate(document)


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]):
    _validate(compose)
    # And with the variables filled in from their defaults, as `docker compose` sees it.
    _validate(interpolate(compose))


def test_schema_check_catches_mistakes(compose: dict[str, Any]):
    broken = json.loads(json.dumps(compose))
    broken["services"]["cellcount"]["healthcheck"]["retires"] = 3
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken)


def test_gpu_service_reserves_one_nvidia_gpu(compose: dict[str, Any]):
    service = compose["services"]["cellcount"]
    assert "profiles" not in service, "the GPU service is the default"
    assert service["build"]["args"]["VARIANT"] == "cuda"
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1
    assert "gpu" in device["capabilities"]
    assert interpolate(service["environment"])["CELLCOUNT_DEVICE"] == "cuda"


def test_cpu_service_is_behind_the_cpu_profile(compose: dict[str, Any]):
    service = compose["services"]["cellcount-cpu"]
    assert service["profiles"] == ["cpu"]
    assert service["build"]["args"]["VARIANT"] == "cpu"
    assert "deploy" not in service
    assert service["environment"]["CELLCOUNT_DEVICE"] == "cpu"
    assert parse_dockerfile().global_args["VARIANT"] != "cpu", "cpu must be asked for"


@pytest.mark.parametrize("name", ["cellcount", "cellcount-cpu"])
def test_service_build_health_ports_and_settings(compose: dict[str, Any], name: str):
    service = compose["services"][name]
    build = service["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == REPO
    assert (REPO / build["dockerfile"]).is_file()

    # The same probe as the image's HEALTHCHECK: one command, no drift.
    (dockerfile_check,) = parse_dockerfile().final.values("HEALTHCHECK")
    healthcheck = service["healthcheck"]
    assert healthcheck["test"] == ["CMD", *healthcheck_argv(dockerfile_check)]
    assert "/ready" in healthcheck["test"][-1]
    assert duration_seconds(healthcheck["start_period"]) >= 120

    (port,) = interpolate(service["ports"])
    assert port.endswith(":8000"), "the container listens on 8000"
    variable = re.search(r"\$\{(\w*PORT):-(\d+)\}", service["ports"][0])
    assert variable is not None, "the published port comes from the environment"
    assert interpolate(service["ports"], {variable[1]: "9000"}) == ["127.0.0.1:9000:8000"]
    env = service["environment"]
    assert env["PORT"] == "8000"
    settings = {key: value for key, value in env.items() if key.startswith("CELLCOUNT_")}
    assert settings["CELLCOUNT_CHECKPOINT"] == (
        "${CELLCOUNT_CHECKPOINT:-/app/weights/unet32.safetensors}"
    )
    for key, value in settings.items():
        if key != "CELLCOUNT_DEVICE" or name == "cellcount":
            assert value.startswith(f"${{{key}:-"), f"{key} is not overridable"

    assert "checkpoints:/checkpoints:ro" in service["volumes"]
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"]
    graceful = float(interpolate(env)["GRACEFUL_TIMEOUT"])
    assert duration_seconds(interpolate(service["stop_grace_period"])) > graceful
    # Every admitted request ends (its count or its 504) inside the drain.
    assert graceful > float(interpolate(env)["CELLCOUNT_REQUEST_TIMEOUT_S"])


def test_checkpoint_volume_is_named(compose: dict[str, Any]):
    assert "checkpoints" in compose["volumes"]


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no docker compose CLI on this machine")
@pytest.mark.parametrize("profile", [[], ["--profile", "cpu"]])
def test_docker_compose_config_accepts_the_file(profile: list[str]):
    """Where the Compose CLI exists, let it load the file too (offline: `config` only)."""
    command = [*_compose_cli(), "-f", str(COMPOSE), *profile, "config", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
