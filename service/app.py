"""The ASGI application: ``service.app:app``. Assembly only; routes live in ``service.routes``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import install_error_handlers
from service.middleware import ApiKeyMiddleware, BodyLimitMiddleware
from service.page import page_router
from service.routes import router
from service.settings import Settings, get_settings
from service.state import start_service, stop_service

TIMED_PATHS = ("/count", "/segment")
# With CELLCOUNT_API_KEY set these need the key; /health, /ready, the page and the API docs
# (which describe the API but expose nothing) stay open so probes and browsers can load them.
PROTECTED_PATHS = ("/count", "/segment", "/model", "/metrics")


class LatencyMiddleware:
    """Request latency per endpoint and status, into the app's Prometheus histogram."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
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

        try:
            await self.app(scope, receive, capture)
        finally:
            state = getattr(self.fastapi_app.state, "service", None)
            if state is not None:
                state.metrics.request_latency.labels(path, str(status)).observe(
                    time.perf_counter() - start
                )
                if status >= 400:
                    state.metrics.errors.labels(str(status)).inc()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = await start_service(settings)
        try:
            yield
        finally:
            await stop_service(app.state.service)

    app = FastAPI(
        title="cellcount",
        version="0.1.0",
        summary="Count cells in microscopy images with a U-Net",
        description=(
            "POST images to `/count` for cell counts (JSON) or to `/segment` for a mask, "
            "instance labels or an outline overlay (PNG). Errors are JSON: "
            '`{"error": {"code": ..., "message": ...}}`.'
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    # Added innermost first: CORS outermost (preflights and 401s carry its headers), then the
    # API key, then the body limit, all before FastAPI parses a multipart body.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    if settings.api_key is not None:
        app.add_middleware(
            ApiKeyMiddleware,
            api_key=settings.api_key.get_secret_value(),
            protected_prefixes=PROTECTED_PATHS,
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Accept"],
            expose_headers=["X-Cell-Count", "X-Model-Id", "Retry-After"],
        )
    app.include_router(router)
    app.include_router(page_router)
    app.add_middleware(LatencyMiddleware, fastapi_app=app)
    return app


app = create_app()
