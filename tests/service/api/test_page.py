"""The page at ``GET /``, without a browser: served files, their types, and no foreign hosts.

The app is built but never started (no lifespan, no model): the page is static and must not
depend on the model being loaded.
"""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser

import httpx
import pytest
from fastapi import FastAPI

from service.api.page import STATIC_DIR
from service.app import create_app
from service.settings import Settings

# Any absolute URL, or a protocol-relative one in an attribute, url() or string literal.
ABSOLUTE_URL = re.compile(r"""https?://[^\s"'<>)]+|(?<=["'(=])\s*//[\w.-]+""", re.IGNORECASE)
# The SVG namespace is an XML name that nothing fetches; it is the one absolute URL allowed.
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}


class AssetLinks(HTMLParser):
    """Collects every URL the page makes the browser load (not plain navigation links)."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in {"script", "img", "source", "iframe"} and values.get("src"):
            self.assets.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.assets.append(values["href"] or "")


class PageClient:
    """Synchronous GETs straight into the ASGI app; httpx's transport never runs the lifespan."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, path: str) -> httpx.Response:
        return asyncio.run(self._get(path))

    async def _get(self, path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://page.test") as http:
            return await http.get(path)


@pytest.fixture(scope="module")
def page_client() -> PageClient:
    return PageClient(create_app(Settings(warmup=False)))


def foreign_urls(text: str) -> list[str]:
    return [url.strip() for url in ABSOLUTE_URL.findall(text) if url.strip() not in ALLOWED_URLS]


def test_index_is_html_with_a_same_origin_policy(page_client):
    response = page_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert "<title>cellcount</title>" in response.text


def test_page_loads_only_same_origin_assets_and_they_exist(page_client):
    parser = AssetLinks()
    parser.feed(page_client.get("/").text)
    assert {"/static/app.js", "/static/style.css"} <= set(parser.assets)
    for url in parser.assets:
        assert url.startswith("/") and not url.startswith("//"), url
        assert page_client.get(url).status_code == 200, url


@pytest.mark.parametrize("path", sorted(p.name for p in STATIC_DIR.iterdir()))
def test_static_files_name_no_other_host(path):
    text = (STATIC_DIR / path).read_text(encoding="utf-8")
    assert foreign_urls(text) == []


def test_the_host_check_catches_foreign_urls():
    css = "@import url(//fonts.example.com/a.css); a { background: url('https://cdn.x/y.png') }"
    js = 'fetch("http://api.example.com/count"); // a comment'
    assert len(foreign_urls(css)) == 2 and len(foreign_urls(js)) == 1


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/style.css", "text/css; charset=utf-8"),
        ("/static/favicon.svg", "image/svg+xml"),
        ("/static/index.html", "text/html; charset=utf-8"),
    ],
)
def test_static_files_have_their_content_type(page_client, path, media_type):
    response = page_client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (STATIC_DIR / path.rsplit("/", 1)[1]).read_bytes()


def test_the_script_calls_the_public_api_on_its_own_origin():
    script = (STATIC_DIR / "app.js").read_text(encoding="utf-8")
    for endpoint in ('"/count"', '"/segment"', '"/model"'):
        assert endpoint in script
    assert "Authorization" in script and "Bearer" in script


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/..%2Fpage.py", "/static/%2e%2e"])
def test_only_shipped_files_are_served(page_client, path):
    response = page_client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_page_is_not_part_of_the_api_schema(page_client):
    paths = page_client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/static/{name}" not in paths
    assert "/count" in paths


def test_page_stays_open_when_the_api_needs_a_key():
    keyed = PageClient(create_app(Settings(warmup=False, api_key="s3cret")))
    assert keyed.get("/").status_code == 200
    assert keyed.get("/static/app.js").status_code == 200
    assert keyed.get("/model").status_code == 401
