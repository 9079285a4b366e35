"""The ASGI application: ``service.app:app``. Assembly only; the routes live in
``service.api.routes``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service.api.errors import install_error_handlers
from service.api.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    CancelledAsUnavailable,
    LatencyMiddleware,
)
from service.api.page import page_router
from service.api.routes import router
from service.serving.state import start_service, stop_service
from service.settings import Settings, get_settings

# With CELLCOUNT_API_KEY set these need the key; /health, /ready, the page and the API docs
# (which describe the API but expose nothing) stay open so probes and browsers can load them.
PROTECTED_PATHS = ("/count", "/segment", "/inspect", "/model", "/metrics")


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
    # shutdown's 503 for a cancelled request, then the API key, then the body limit, all before
    # FastAPI parses a multipart body.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    if settings.api_key is not None:
        app.add_middleware(
            ApiKeyMiddleware,
            api_key=settings.api_key.get_secret_value(),
            protected_prefixes=PROTECTED_PATHS,
        )
    app.add_middleware(CancelledAsUnavailable)
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
