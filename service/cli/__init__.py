"""``cellcount``: the command line. It only talks HTTP to a running service (or starts one)."""

from service.cli.main import main

__all__ = ["main"]
