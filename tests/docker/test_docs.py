"""docs/deploy.md says what the files do: build arguments and the torchrun command."""

from __future__ import annotations

import ast
import re
import shlex

import pytest

from model_training import train
from tests.docker.conftest import REPO, parse_dockerfile

DOC = REPO / "docs" / "deploy.md"


def shell_commands() -> list[list[str]]:
    """Every command of the doc's ``sh`` blocks, continuation lines joined, split like a shell."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line:
                commands.append(shlex.split(line))
    return commands


def torchrun_commands() -> list[list[str]]:
    found = []
    for words in shell_commands():
        names = [word.rsplit("/", 1)[-1] for word in words]
        if "torchrun" in names:
            found.append(words)
    return found


def test_build_arguments_table_matches_the_dockerfile():
    documented = dict(re.findall(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", DOC.read_text(), re.MULTILINE))
    assert documented == parse_dockerfile().global_args


def _tested_launch_words() -> set[str]:
    """String constants of the two-process torchrun test in tests/model_training."""
    tree = ast.parse((REPO / "tests" / "model_training" / "test_train.py").read_text())
    (function,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "test_torchrun_two_gloo_processes"
    ]
    return {
        node.value
        for node in ast.walk(function)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


@pytest.mark.parametrize("words", torchrun_commands(), ids=lambda words: " ".join(words[:4]))
def test_documented_torchrun_command_is_the_tested_one(words: list[str]):
    module = words.index("-m")
    assert words[module + 1] == "model_training.train"
    start = next(i for i, word in enumerate(words) if word.rsplit("/", 1)[-1] == "torchrun")
    if words[0] == "docker":  # `--entrypoint torchrun IMAGE ...`: launcher flags follow the image
        start += 1
    launcher = [word for word in words[start + 1 : module] if word.startswith("--")]
    assert {"--standalone", "--nproc-per-node"} <= set(launcher)
    assert set(launcher) <= _tested_launch_words(), "flags the two-process test does not exercise"
    # Every training option is one the CLI accepts.
    train.parse_args(words[module + 2 :])


def test_doc_has_a_torchrun_command_for_the_host_and_the_image():
    kinds = {words[0] == "docker" for words in torchrun_commands()}
    assert kinds == {True, False}
