"""service.api.middleware: refusals before FastAPI reads a body, in the same JSON as every error."""

from __future__ import annotations

import asyncio
import json

import httpx
from fastapi import FastAPI, Request

from service.api.errors import error_response
from service.api.middleware import ApiKeyMiddleware, BodyLimitMiddleware, send_error


def app_with(middleware: type, **options: object) -> tuple[FastAPI, list[int]]:
    """An app whose one route records the size of each body it was handed."""
    app = FastAPI()
    seen: list[int] = []

    @app.post("/count")
    async def count(request: Request) -> dict:
        seen.append(len(await request.body()))
        return {"ok": True}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    app.add_middleware(middleware, **options)
    return app, seen


def call(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_send_error_sends_what_error_response_builds():
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(send_error(send, 401, "unauthorized", "no key", {"WWW-Authenticate": "Bearer"}))
    built = error_response(401, "unauthorized", "no key", {"WWW-Authenticate": "Bearer"})
    start, body = sent
    assert start["status"] == 401 and start["headers"] == built.raw_headers
    assert body["body"] == built.body
    assert json.loads(body["body"]) == {"error": {"code": "unauthorized", "message": "no key"}}


def test_api_key_is_required_on_the_api_but_not_on_probes():
    app, seen = app_with(ApiKeyMiddleware, api_key="s3cret", protected_prefixes=("/count",))
    missing = call(app, "POST", "/count", content=b"x")
    wrong = call(app, "POST", "/count", content=b"x", headers={"Authorization": "Bearer nope"})
    right = call(app, "POST", "/count", content=b"x", headers={"Authorization": "Bearer s3cret"})
    assert missing.status_code == wrong.status_code == 401
    assert "missing API key" in missing.json()["error"]["message"]
    assert "wrong API key" in wrong.json()["error"]["message"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200 and seen == [1]  # refused requests never reached the route
    assert call(app, "GET", "/health").status_code == 200


def test_body_limit_refuses_by_declared_length_and_by_counting():
    app, seen = app_with(BodyLimitMiddleware, limit=100)
    declared = call(app, "POST", "/count", content=b"x" * 101)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"

    async def chunks():  # no Content-Length: the middleware has to count
        for _ in range(5):
            yield b"x" * 40

    counted = call(app, "POST", "/count", content=chunks())
    assert counted.status_code == 413 and "exceeds 100 bytes" in counted.json()["error"]["message"]
    assert call(app, "POST", "/count", content=b"x" * 100).status_code == 200
    assert seen == [100]
