"""service.errors: every failure becomes one JSON shape with the status and code a client sees."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from service.api.errors import error_response, install_error_handlers
from service.errors import ApiError
from service.files.imaging import ImageError
from service.serving.batcher import BatcherStopped, BatchFailed, DeadlineExceeded, Overloaded
from service.serving.failures import as_api_error


def test_error_response_is_the_documented_shape():
    response = error_response(413, "too_big", "too many bytes", {"Retry-After": "3"}, "a.png")
    assert response.status_code == 413 and response.headers["retry-after"] == "3"
    assert json.loads(response.body) == {
        "error": {"code": "too_big", "message": "too many bytes", "filename": "a.png"}
    }
    assert "filename" not in json.loads(error_response(400, "x", "y").body)["error"]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ImageError(415, "unsupported_media_type", "text"), 415, "unsupported_media_type"),
        (Overloaded("10 tiles are queued (limit 8)", 4), 503, "overloaded"),
        (DeadlineExceeded("late"), 504, "timeout"),
        (BatchFailed("boom"), 500, "inference_failed"),
        (BatcherStopped("bye", 7), 503, "shutting_down"),
        (KeyError("surprise"), 500, "internal_error"),
    ],
)
def test_pipeline_exceptions_map_to_status_and_code(error, status, code):
    mapped = as_api_error(error, filename="cells.png")
    assert (mapped.status, mapped.code) == (status, code)


def test_file_errors_name_the_file_and_overload_says_when_to_retry():
    image = as_api_error(ImageError(400, "invalid_image", "cut short"), "b.png")
    assert image.message == "b.png: cut short" and image.filename == "b.png"
    busy = as_api_error(Overloaded("10 tiles are queued (limit 8)", 4))
    assert busy.headers == {"Retry-After": "4"}
    same = ApiError(418, "teapot", "no")
    assert as_api_error(same) is same


class Body(BaseModel):
    size: int


def test_handlers_give_every_error_the_same_shape():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/refuse")
    async def refuse() -> None:
        raise ApiError(409, "conflict", "already there", {"X-Why": "test"})

    @app.post("/typed")
    async def typed(body: Body) -> int:
        return body.size

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.get("/refuse"),
                await client.post("/typed", json={"size": "big"}),
                await client.get("/nowhere"),
            ]

    refused, invalid, missing = asyncio.run(calls())
    assert refused.status_code == 409 and refused.headers["x-why"] == "test"
    assert refused.json() == {"error": {"code": "conflict", "message": "already there"}}
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_parameters"
    assert "size" in invalid.json()["error"]["message"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
