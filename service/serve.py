"""``cellcount-serve``: run the service with uvicorn (HOST/PORT from the environment)."""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cellcount-serve", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=int(os.environ.get("GRACEFUL_TIMEOUT", "30")),
        help="seconds in-flight requests get to finish after SIGTERM",
    )
    args = parser.parse_args(argv)
    # One level for uvicorn and the service's loggers: the default (info) shows each start-up
    # step with its duration, LOG_LEVEL=warning quiets both.
    level = os.environ.get("LOG_LEVEL", "info")
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        "service.app:app",
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=args.graceful_timeout,
        log_level=level,
    )


if __name__ == "__main__":
    main()
