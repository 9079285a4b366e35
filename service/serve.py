"""``cellcount-serve``: run the service with uvicorn (HOST/PORT from the environment)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from types import FrameType

import uvicorn

from service.serving.drain import signal_shutdown

STARTUP_FAILURE = 3  # uvicorn's exit status when the application does not start


class DrainingServer(uvicorn.Server):
    """uvicorn's server, telling the service when a shutdown begins and how long it may take,
    so what cannot finish in time is answered 503 (``service.serving.drain``), not cancelled."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            signal_shutdown(float(self.config.timeout_graceful_shutdown or 0))
        super().handle_exit(sig, frame)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cellcount-serve", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=int(os.environ.get("GRACEFUL_TIMEOUT", "65")),
        help="seconds in-flight requests get to finish after SIGTERM (what cannot is answered "
        "503); longer than CELLCOUNT_REQUEST_TIMEOUT_S, so that every admitted request ends "
        "inside it",
    )
    args = parser.parse_args(argv)
    # One level for uvicorn and the service's loggers: the default (info) shows each start-up
    # step with its duration, LOG_LEVEL=warning quiets both.
    level = os.environ.get("LOG_LEVEL", "info")
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = uvicorn.Config(
        "service.app:app",
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=args.graceful_timeout,
        log_level=level,
    )
    server = DrainingServer(config)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
