"""The error a client sees: an HTTP status, a stable code and a message, raised from any layer
(readers, pipeline, routes) and rendered as ``{"error": {"code": ..., "message": ...}}`` by
``service.api.errors``."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        filename: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers
        self.filename = filename
