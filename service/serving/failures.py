"""What each failure on the counting path means to a client: its status and code."""

from __future__ import annotations

import logging

from service.errors import ApiError
from service.files.imaging import ImageError
from service.serving.batcher import BatcherStopped, BatchFailed, DeadlineExceeded, Overloaded

log = logging.getLogger("cellcount.errors")


def as_api_error(error: Exception, filename: str | None = None) -> ApiError:
    """Map a pipeline exception to the status and code a client sees."""
    prefix = f"{filename}: " if filename else ""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ImageError):
        return ApiError(error.status, error.code, prefix + error.message, filename=filename)
    if isinstance(error, Overloaded):
        return ApiError(503, "overloaded", str(error), {"Retry-After": str(error.retry_after)})
    if isinstance(error, DeadlineExceeded):
        return ApiError(504, "timeout", prefix + str(error), filename=filename)
    if isinstance(error, BatchFailed):
        return ApiError(500, "inference_failed", prefix + str(error), filename=filename)
    if isinstance(error, BatcherStopped):
        return ApiError(503, "shutting_down", str(error), {"Retry-After": str(error.retry_after)})
    log.exception("unexpected error", exc_info=error)
    return ApiError(500, "internal_error", f"{prefix}{type(error).__name__}: {error}")
