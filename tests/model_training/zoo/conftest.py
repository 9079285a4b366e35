"""One package exported from the shipped width-16 checkpoint, shared by the zoo tests, with
the network cut off: a test fails if the exporter, the spec validation or bioimageio.core's
test tries to connect anywhere."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CHECKPOINT = ROOT / "weights" / "unet16.safetensors"


@contextlib.contextmanager
def offline(cache: Path) -> Iterator[list[tuple]]:
    """No socket may connect (each attempt is recorded and refused), and bioimageio caches
    under ``cache`` instead of the user's home."""
    from bioimageio.spec import settings

    attempts: list[tuple] = []

    def refuse(sock: socket.socket, address: object, *args: object) -> None:
        attempts.append((sock.family, address))
        raise OSError(f"test is offline: connection to {address!r} refused")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        patch.setattr(settings, "cache_path", cache)
        yield attempts


@dataclass(frozen=True)
class Exported:
    package: Path
    sample_count: int
    sample_truth: int
    network_attempts: list[tuple]


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    from model_training.zoo.export import export_package

    root = tmp_path_factory.mktemp("zoo")
    with offline(root / "cache") as attempts:
        result = export_package(CHECKPOINT, root / "unet16.bioimageio.zip")
    return Exported(result.path, result.sample_count, result.sample_truth, attempts)


@pytest.fixture
def no_network(tmp_path: Path) -> Iterator[list[tuple]]:
    with offline(tmp_path / "cache") as attempts:
        yield attempts
