"""The web page for people at ``GET /``: static HTML, CSS and JavaScript, no build step.

The page is a client of the public API like any other (``/count``, ``/segment``, ``/model``), so
this module only serves files. Explicit routes with a fixed file list, rather than a mounted
``StaticFiles``, because ``include_router`` does not carry mounts over in every FastAPI version,
and so that nothing but the shipped files can ever be served from here.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.errors import ApiError

STATIC_DIR = Path(__file__).parent / "static"

# Explicit types: ``mimetypes`` reads the host's /etc/mime.types, so its answer for .js varies.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# The page loads nothing from other hosts (it must work offline) and runs no inline code; the
# browser enforces both. blob: is for the uploaded originals and the PNGs fetched from the API.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

HEADERS = {
    "Cache-Control": "no-cache",  # revalidate, so an upgraded service never runs a stale page
    "X-Content-Type-Options": "nosniff",
}

page_router = APIRouter(include_in_schema=False)


def _static_files() -> dict[str, Path]:
    """The servable files, fixed at import: a request can only name one of these."""
    if not STATIC_DIR.is_dir():
        return {}
    return {
        path.name: path
        for path in sorted(STATIC_DIR.iterdir())
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


STATIC_FILES = _static_files()


def _file_response(name: str) -> FileResponse:
    path = STATIC_FILES.get(name)
    if path is None:
        raise ApiError(404, "not_found", f"no static file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


@page_router.get("/")
async def index() -> FileResponse:
    """The page itself; the CSP header makes the same-origin, offline promise enforceable."""
    response = _file_response("index.html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@page_router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    return _file_response(name)
