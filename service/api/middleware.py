"""ASGI middlewares: the checks that must act before FastAPI reads a request body, and timing.

FastAPI parses a multipart body completely before any route code or dependency runs, so checks
that should cost a refused client nothing (its key, its size) live here, at the ASGI layer.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response

log = logging.getLogger("cellcount.middleware")

PUBLIC_PATHS = ("/health", "/ready")
TIMED_PATHS = ("/count", "/segment")


async def send_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    """Send the service's error answer from below FastAPI; ``error_response`` builds it, so
    a refusal here reads exactly like one from a route."""
    response = error_response(status, code, message, headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class ApiKeyMiddleware:
    """``Authorization: Bearer <key>`` on the API; the page, docs, /health and /ready stay open.

    The comparison is constant-time (``hmac.compare_digest``), and a refused request never
    reaches the body parser, the batcher or the model.
    """

    def __init__(self, app: ASGIApp, api_key: str, protected_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()
        self.protected = protected_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(self.protected) and path not in PUBLIC_PATHS:
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                message = "missing API key" if not given else "wrong API key"
                await send_error(
                    send,
                    401,
                    "unauthorized",
                    f"{message}: send the header 'Authorization: Bearer <CELLCOUNT_API_KEY>'",
                    {"WWW-Authenticate": "Bearer"},
                )
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies over ``limit`` bytes: by Content-Length before reading anything,
    and by counting for bodies sent without a length (chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await send_error(
                send,
                413,
                "request_too_large",
                f"the request has {int(declared)} bytes; this service accepts at most "
                f"{self.limit} per request (CELLCOUNT_MAX_REQUEST_BYTES)",
            )
            return
        received, exceeded, replaced = 0, False, False
        message_413 = f"the request body exceeds {self.limit} bytes (CELLCOUNT_MAX_REQUEST_BYTES)"

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:  # stop feeding the parser; it fails, and its answer is replaced below
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def replacing_send(message: Message) -> None:
            # Whatever the app answers to a body it could not finish reading, the client is told
            # the real reason: 413.
            nonlocal replaced
            if exceeded and message["type"] == "http.response.start":
                replaced = True
                await send_error(send, 413, "request_too_large", message_413)
                return
            if not replaced:
                await send(message)

        try:
            await self.app(scope, counting_receive, replacing_send)
        except Exception:
            if not exceeded:
                raise
            if not replaced:
                await send_error(send, 413, "request_too_large", message_413)


class CancelledAsUnavailable:
    """A request the server cancels (the end of its shutdown grace period) answers 503 with
    Retry-After, not uvicorn's 500.

    The batcher cuts the requests it holds shortly before the grace period ends
    (``service.serving.drain``); this catches what it cannot reach, such as a request still
    decoding a large file. The cancellation is not re-raised once the answer is sent: the task
    was cancelled to end it, and ending is what it does.
    """

    def __init__(self, app: ASGIApp, retry_after_s: int = 5) -> None:
        self.app = app
        self.retry_after = str(retry_after_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except asyncio.CancelledError:
            if started:
                raise
            log.warning("%s %s cut by the server's shutdown: 503", scope["method"], scope["path"])
            await send_error(
                send,
                503,
                "shutting_down",
                "the server is shutting down and this request could not finish in time",
                {"Retry-After": self.retry_after},
            )


class LatencyMiddleware:
    """Request latency per endpoint and status, into the app's Prometheus histogram."""

    def __init__(self, app: ASGIApp, fastapi_app: Any) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path not in TIMED_PATHS:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        state = getattr(self.fastapi_app.state, "service", None)
        if state is not None:
            state.metrics.in_progress.labels(path).inc()
        try:
            await self.app(scope, receive, capture)
        finally:
            if state is not None:
                state.metrics.in_progress.labels(path).dec()
                state.metrics.request_latency.labels(path, str(status)).observe(
                    time.perf_counter() - start
                )
                if status >= 400:
                    state.metrics.errors.labels(str(status)).inc()
