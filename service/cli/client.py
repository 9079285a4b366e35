"""Python clients of the cellcount HTTP API: one sync, one async.

Both share the same rules so scripts and the CLI behave alike: errors become
:class:`CellCountError` carrying the server's own code and message, and only 503 (overloaded,
loading, shutting down) is retried, after the server's Retry-After, because every other error
would fail the same way again.
"""

from __future__ import annotations

import asyncio
import mimetypes
import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from os import PathLike
from pathlib import Path
from typing import Any

import httpx

ImageInput = str | PathLike[str] | bytes | tuple[str, bytes]
"""A path, raw bytes (sent as ``image-<n>``), or ``(filename, bytes)``."""

PLANE_OPTIONS = frozenset(
    {"channel", "z", "t", "position", "pixel_size_um", "diameter", "diameter_um"}
)
POST_OPTIONS = frozenset(
    {"threshold", "min_area", "split_touching", "exclude_border", "reject_unsure"}
)
COUNT_OPTIONS = PLANE_OPTIONS | POST_OPTIONS | {"include_cells", "include_mask"}
SEGMENT_OPTIONS = PLANE_OPTIONS | POST_OPTIONS
SEGMENT_OUTPUTS = ("mask", "labels", "overlay")
SEGMENT_FORMATS = ("png", "tiff")

DEFAULT_TIMEOUT_S = 120.0
MAX_ATTEMPTS = 5
MAX_RETRY_DELAY_S = 30.0
RETRY_JITTER = 0.25


class CellCountError(Exception):
    """An error answer from the service: HTTP status plus its stable code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def error_from_response(response: httpx.Response) -> CellCountError:
    """The server's ``{"error": {...}}`` body when there is one; a proxy's page otherwise."""
    try:
        detail = response.json()["error"]
        return CellCountError(response.status_code, str(detail["code"]), str(detail["message"]))
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return CellCountError(response.status_code, f"http_{response.status_code}", text)


def retry_delay(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait before retrying a 503: Retry-After (seconds or HTTP date), capped,
    else exponential backoff so a server without the header is not hammered. Up to a quarter
    more at random, so that the clients refused together do not all return together."""
    value = response.headers.get("retry-after", "").strip()
    delay: float | None = None
    if value.isdigit():
        delay = float(value)
    elif value:
        try:
            delay = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            delay = None
    if delay is None:
        delay = 2.0 ** (attempt - 1)
    return min(max(delay, 0.0), MAX_RETRY_DELAY_S) * (1.0 + RETRY_JITTER * random.random())


def query_params(options: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """Options as query parameters; None means "server default" so it is left out, and an
    unknown name is a typo that would otherwise be ignored silently by the server."""
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return {
        key: ("true" if value else "false") if isinstance(value, bool) else value
        for key, value in options.items()
        if value is not None
    }


def load_input(item: ImageInput, index: int) -> tuple[str, bytes]:
    """(filename, bytes) of one input; bytes are read up front so a retry can resend them."""
    if isinstance(item, tuple):
        return item
    if isinstance(item, bytes | bytearray):
        return f"image-{index}", bytes(item)
    path = Path(item)
    return path.name, path.read_bytes()


def upload(name: str, data: bytes) -> tuple[str, bytes, str]:
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return name, data, mime


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise error_from_response(response)
    return response


class CellCountClient:
    """Blocking client; use as a context manager (or call :meth:`close`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_attempts: int = MAX_ATTEMPTS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.http = httpx.Client(
            base_url=base_url, headers=auth_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> CellCountClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying 503 only; raises CellCountError for any error answer."""
        for attempt in range(1, self.max_attempts + 1):
            response = self.http.request(method, url, **kwargs)
            if response.status_code != 503 or attempt == self.max_attempts:
                return checked(response)
            time.sleep(retry_delay(response, attempt))
        raise AssertionError("unreachable")

    def count(self, *inputs: ImageInput, **options: Any) -> list[dict[str, Any]]:
        """One result dict per input, in order (a single request: one bad file fails all)."""
        files = [("files", upload(*load_input(item, i))) for i, item in enumerate(inputs)]
        params = query_params(options, COUNT_OPTIONS)
        return self.request("POST", "/count", files=files, params=params).json()["results"]

    def segment(
        self, image: ImageInput, output: str = "mask", fmt: str = "png", **options: Any
    ) -> tuple[bytes, int]:
        """(image bytes, cell count) for ``output`` mask, labels or overlay, as ``fmt`` png or
        tiff (32-bit labels for images of more than 65535 cells)."""
        params = {**query_params(options, SEGMENT_OPTIONS), "output": output, "format": fmt}
        files = {"file": upload(*load_input(image, 0))}
        response = self.request(
            "POST", "/segment", files=files, params=params, headers={"Accept": f"image/{fmt}"}
        )
        return response.content, int(response.headers["x-cell-count"])

    def inspect(self, image: ImageInput, position: int | None = None) -> dict[str, Any]:
        """What the file holds (positions, axes, channels, pixel size, what a count needs)."""
        params = query_params({"position": position}, frozenset({"position"}))
        files = {"file": upload(*load_input(image, 0))}
        return self.request("POST", "/inspect", files=files, params=params).json()

    def health(self) -> dict[str, Any]:
        return checked(self.http.get("/health")).json()

    def ready(self) -> bool:
        """Whether the model is loaded; a 503 here is the answer, not something to retry."""
        response = self.http.get("/ready")
        if response.status_code == 503:
            return False
        return checked(response).json().get("status") == "ready"

    def model(self) -> dict[str, Any]:
        return self.request("GET", "/model").json()


class AsyncCellCountClient:
    """Asyncio client for many concurrent single-file requests (what the CLI uses)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_attempts: int = MAX_ATTEMPTS,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers=auth_headers(api_key),
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections),
            transport=transport,
        )

    async def __aenter__(self) -> AsyncCellCountClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying 503 only; raises CellCountError for any error answer."""
        for attempt in range(1, self.max_attempts + 1):
            response = await self.http.request(method, url, **kwargs)
            if response.status_code != 503 or attempt == self.max_attempts:
                return checked(response)
            await asyncio.sleep(retry_delay(response, attempt))
        raise AssertionError("unreachable")

    async def count_bytes(self, name: str, data: bytes, **options: Any) -> dict[str, Any]:
        params = query_params(options, COUNT_OPTIONS)
        files = {"files": upload(name, data)}
        response = await self.request("POST", "/count", files=files, params=params)
        return response.json()["results"][0]

    async def inspect_bytes(self, name: str, data: bytes) -> dict[str, Any]:
        files = {"file": upload(name, data)}
        return (await self.request("POST", "/inspect", files=files)).json()

    async def count_file(self, path: str | PathLike[str], **options: Any) -> dict[str, Any]:
        """The result for one file; read in a thread so a slow disk does not stall the loop."""
        data = await asyncio.to_thread(Path(path).read_bytes)
        return await self.count_bytes(Path(path).name, data, **options)
