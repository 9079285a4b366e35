"""The server's shutdown signal, carried from its SIGTERM handler to the running service.

uvicorn, on SIGTERM, stops accepting, waits ``GRACEFUL_TIMEOUT`` seconds for the requests in
flight, then cancels the rest, and a cancelled request would answer 500. ``service.serve`` calls
:func:`signal_shutdown` when the signal arrives; the service (``serving.state``) listens and has
the batcher answer what cannot finish with a 503 and Retry-After a little before the grace
period ends. A process-wide hook because uvicorn owns both the signal and the application
object: the server never sees the service's state, and the app never sees the signal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("cellcount.drain")

_listeners: list[Callable[[float], None]] = []


def on_shutdown(listener: Callable[[float], None]) -> Callable[[], None]:
    """Call ``listener(grace_s)`` when the server begins to shut down; returns the unsubscribe."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def signal_shutdown(grace_s: float) -> None:
    """The server begins to shut down and cancels what is unfinished after ``grace_s``."""
    for listener in list(_listeners):
        try:
            listener(grace_s)
        except Exception:  # a signal handler must not raise
            log.exception("shutdown listener failed")
