"""One error shape for every failure: ``{"error": {"code": ..., "message": ...}}``.

Handlers turn the service's exceptions, FastAPI's validation errors and Starlette's HTTP errors
into that shape, so a client parses one format whatever went wrong.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import ApiError


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    filename: str | None = None,
) -> JSONResponse:
    detail = {"code": code, "message": message}
    if filename is not None:  # which upload of a multi-file request was refused
        detail["filename"] = filename
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    """One clause per field. A query option of several accepted forms (``z``: an index or
    'max') fails once per form, under a loc that ends in the form's tag; those are joined
    into one clause that also says what was sent."""
    fields: dict[str, list[str]] = {}
    sent: dict[str, object] = {}
    for item in error.errors():
        loc = tuple(str(p) for p in item.get("loc", ()) if p != "body")
        if len(loc) > 2 and loc[0] == "query":
            where = ".".join(loc[:2])
            sent[where] = item.get("input")
        else:
            where = ".".join(loc)
        fields.setdefault(where, []).append(str(item.get("msg", "invalid")))
    parts = []
    for where, messages in fields.items():
        got = f" (got {sent[where]!r})" if where in sent else ""
        parts.append(f"{where}: {', or '.join(dict.fromkeys(messages))}{got}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(
            error.status, error.code, error.message, error.headers, error.filename
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_parameters", _validation_message(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        phrase = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_")
        return error_response(error.status_code, phrase, str(error.detail), error.headers)
