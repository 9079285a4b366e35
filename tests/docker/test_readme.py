"""The README's Docker commands are the ones the other tests in this folder check."""

from __future__ import annotations

import re
import shlex

from tests.docker.conftest import REPO, load_compose, parse_dockerfile


def readme_docker_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Docker", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("docker"):
                commands.append(shlex.split(line))
    return commands


def test_readme_docker_commands_match_the_artifacts():
    commands = readme_docker_commands()
    dockerfile = parse_dockerfile()
    builds = [c for c in commands if c[:2] == ["docker", "build"]]
    assert builds and all(c[-1] == "." for c in builds)  # the root Dockerfile
    build_args = [c[c.index("--build-arg") + 1] for c in builds if "--build-arg" in c]
    for argument in build_args:
        name, _, value = argument.partition("=")
        assert name in dockerfile.global_args
        assert f"python-{value}" in {stage.alias for stage in dockerfile.stages}
    runs = [c for c in commands if c[:2] == ["docker", "run"]]
    exposed = {value.split("/")[0] for value in dockerfile.final.values("EXPOSE")}
    for run in runs:
        published = run[run.index("-p") + 1]
        assert published.split(":")[-1] in exposed
        if "-e" in run:
            setting = run[run.index("-e") + 1].split("=", 1)[0]
            assert setting == "CELLCOUNT_CHECKPOINT"
    compose_commands = [c for c in commands if c[:2] == ["docker", "compose"]]
    assert compose_commands
    compose = load_compose()
    for command in compose_commands:
        assert (REPO / command[command.index("-f") + 1]).is_file()
    assert "cpu" in compose["services"]["cellcount-cpu"]["profiles"]
