"""One direction between the packages (docs/architecture.md): the service uses the model's
code, the model's code never uses the service, and the service never loads training code."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAINING_ONLY = {"train", "data", "evaluate", "validation_sets", "distributed", "plots"}


def imported_modules(package: str) -> dict[str, set[str]]:
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_model_training_never_imports_service():
    for path, names in imported_modules("model_training").items():
        assert not {n for n in names if n == "service" or n.startswith("service.")}, path


def test_service_never_imports_training_code():
    for path, names in imported_modules("service").items():
        forbidden = {n for n in names if n.removeprefix("model_training.") in TRAINING_ONLY}
        assert not forbidden, (path, forbidden)


# Inside the service, imports run one way: api -> serving -> files. The shared vocabulary
# (service.errors, service.options, service.pixel_sizes, service.settings) sits at the top and
# imports none of them.
LAYERS = {"files": set(), "serving": {"files"}, "api": {"serving", "files"}}
SHARED = (
    "service/errors.py",
    "service/options.py",
    "service/pixel_sizes.py",
    "service/settings.py",
)


def _service_layers(names: set[str]) -> set[str]:
    return {n.split(".")[1] for n in names if n.startswith("service.") and n.count(".") >= 1}


def test_service_layers_import_one_way():
    for path, names in imported_modules("service").items():
        parts = path.split("/")
        if len(parts) > 2 and parts[1] in LAYERS:
            forbidden = (_service_layers(names) & set(LAYERS)) - LAYERS[parts[1]] - {parts[1]}
            assert not forbidden, (path, forbidden)
        if path in SHARED:
            assert not _service_layers(names) & {*LAYERS, "cli"}, path


def test_the_command_line_only_talks_http():
    for path, names in imported_modules("service").items():
        if path.startswith("service/cli/"):
            assert not _service_layers(names) & set(LAYERS), path


def test_service_never_imports_the_bioimageio_packaging():
    """model_training.zoo needs the optional `bioimageio` extra; the service runs without it."""
    for path, names in imported_modules("service").items():
        zoo = {n for n in names if n == "model_training.zoo" or n.startswith("model_training.zoo.")}
        assert not zoo and not {n for n in names if n.startswith("bioimageio")}, path
