"""The page in a real browser (Chromium driven by Playwright) against the live server.

The browser is Debian's Chromium (``CELLCOUNT_CHROMIUM``, default /usr/bin/chromium), else
Playwright's own. ``make test`` brings one first (``make browser``); where it could not, these
tests skip and say what to run, so a fresh machine still passes ``make test``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.service.conftest import LiveServer, synthetic_png
from tests.service.microscopy_files import CHANNELS, nuclei, ome_tiff, stains

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError as error:  # reported by the fixture, as a failure
    PLAYWRIGHT_MISSING: ImportError | None = error
else:
    PLAYWRIGHT_MISSING = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Request

CHROMIUM = Path(os.environ.get("CELLCOUNT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 20_000
OUTLINE_RGB = (255, 214, 0)

# Counts the pixels of an <img> that have the server's outline colour (the overlay is a blob: URL
# of this origin, so the canvas is not tainted).
COUNT_OUTLINE_PIXELS = """([img, rgb]) => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let hits = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] === rgb[0] && data[i + 1] === rgb[1] && data[i + 2] === rgb[2]) hits += 1;
  }
  return hits;
}"""


INSTALL_HINT = (
    "run `make browser` (as root it installs Debian's chromium with apt-get, otherwise "
    "Playwright's: .venv/bin/python -m playwright install chromium)"
)


def browser_executable() -> tuple[str | None, str | None]:
    """(path to launch, None) or (None, why there is none and what to run)."""
    if PLAYWRIGHT_MISSING is not None:
        return None, f"Playwright is missing ({PLAYWRIGHT_MISSING}): pip install -e '.[dev]'"
    if CHROMIUM.exists():
        return str(CHROMIUM), None
    with sync_playwright() as playwright:
        bundled = Path(playwright.chromium.executable_path)
    if bundled.exists():
        return str(bundled), None
    return None, f"no Chromium at {CHROMIUM} nor Playwright's at {bundled}: {INSTALL_HINT}"


def test_a_browser_is_installed():
    executable, missing = browser_executable()
    if missing:
        pytest.skip(missing)
    assert executable and Path(executable).exists()


DROP_TEXT_FILE = """name => {
  const files = new DataTransfer();
  files.items.add(new File(["not an image"], name, { type: "text/plain" }));
  const zone = document.getElementById("drop-zone");
  zone.dispatchEvent(new DragEvent("drop", { dataTransfer: files, bubbles: true }));
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable, missing = browser_executable()
    if missing:
        pytest.skip(missing)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    # A listener before the first navigation turns on file-chooser interception early; turned on
    # by expect_file_chooser alone, it can miss a chooser opened right after the page loads.
    page.on("filechooser", lambda chooser: None)
    page.goto(f"{live_server.url}/")
    expect(page.locator("#model-id")).to_have_text(live_server.state.model_id)
    yield page
    context.close()


def card(page: Page, filename: str) -> Locator:
    return page.locator(".card").filter(has=page.locator(".filename", has_text=filename))


def test_counts_overlays_masks_and_csv_match_the_api(page, client, tmp_path):
    images = {
        "sparse.png": synthetic_png(21, count=12)[0],
        "dense.png": synthetic_png(22, size=(192, 256), count=40)[0],
    }
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
    expected = {}
    for name, data in images.items():
        response = client.post("/count", files={"files": (name, data, "image/png")})
        assert response.status_code == 200, response.text
        expected[name] = response.json()["results"][0]

    authorizations: list[str | None] = []

    def record_authorization(request: Request) -> None:
        if "/count" in request.url or "/segment" in request.url:
            authorizations.append(request.headers.get("authorization"))

    page.on("request", record_authorization)
    page.fill("#api-key", "test-key")
    page.set_input_files("#file-input", [str(tmp_path / name) for name in images])

    expect(page.locator(".card[data-status='done']")).to_have_count(2)
    expect(page.locator("#progress-text")).to_have_text("2 / 2 done")
    for name, result in expected.items():
        item = card(page, name)
        expect(item.locator("[data-role='count']")).to_have_text(str(result["count"]))
        expect(item.locator("tbody tr")).to_have_count(result["count"])
        expect(item.locator(".dims")).to_contain_text(f"{result['width']} × {result['height']}")
        overlay = item.locator("img[data-view='overlay']")
        expect(overlay).to_be_visible()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=overlay.element_handle()
        )
        assert overlay.evaluate("img => img.naturalWidth") == result["width"]
        assert page.evaluate(COUNT_OUTLINE_PIXELS, [overlay.element_handle(), OUTLINE_RGB]) > 0
    total = sum(result["count"] for result in expected.values())
    expect(page.locator("#total-cells")).to_have_text(str(total))
    assert authorizations and set(authorizations) == {"Bearer test-key"}

    page.screenshot(path=str(tmp_path / "page.png"))

    page.locator("#global-view label", has_text="Mask").click()
    masks = page.locator(".card img[data-view='mask']")
    expect(masks).to_have_count(2)
    page.wait_for_function(
        "imgs => imgs.every(img => img.complete && img.naturalWidth > 0)",
        arg=masks.element_handles(),
    )

    with page.expect_download() as download:
        page.click("#csv-button")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [row["filename"] for row in rows] == list(images)
    for row in rows:
        result = expected[row["filename"]]
        assert (int(row["count"]), int(row["width"]), int(row["height"])) == (
            result["count"],
            result["width"],
            result["height"],
        )
        assert row["error"] == ""


def test_a_refused_upload_shows_the_servers_message(page, client, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("these are not cells\n")
    refused = client.post("/count", files={"files": ("notes.txt", notes.read_bytes())})
    assert refused.status_code == 415
    message = refused.json()["error"]["message"]

    # The drop zone opens the file picker from the keyboard.
    page.focus("#drop-zone")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(str(notes))

    item = card(page, "notes.txt")
    expect(item).to_have_attribute("data-status", "error")
    expect(item.locator(".error-message")).to_have_text(message)
    expect(page.locator("#progress-text")).to_have_text("1 / 1 done · 1 refused")

    # Dropped files take the same path (a synthetic drop: Playwright cannot drag from the desktop).
    page.evaluate(DROP_TEXT_FILE, "dropped.txt")
    expect(card(page, "dropped.txt")).to_have_attribute("data-status", "error")
    expect(page.locator("#progress-text")).to_have_text("2 / 2 done · 2 refused")
    page.screenshot(path=str(tmp_path / "refused.png"))


def test_options_are_sent_and_change_the_count(page, client, tmp_path):
    data, _ = synthetic_png(23, count=30)
    (tmp_path / "cells.png").write_bytes(data)
    params = {"threshold": "0.9", "exclude_border": "true"}
    expected = client.post("/count", files={"files": ("cells.png", data)}, params=params)
    assert expected.status_code == 200, expected.text

    page.fill("#threshold", "0.9")
    page.check("#exclude-border")
    page.set_input_files("#file-input", str(tmp_path / "cells.png"))
    item = card(page, "cells.png")
    expect(item).to_have_attribute("data-status", "done")
    expect(item.locator("[data-role='count']")).to_have_text(
        str(expected.json()["results"][0]["count"])
    )
    expect(item.locator("[data-role='meta']")).to_contain_text("threshold 0.90")

    page.fill("#threshold", "1.5")
    page.click("#recount-button")
    expect(page.locator("#options-error")).to_contain_text("between 0 and 1")


def test_a_z_stack_is_refused_then_counted_with_z_max_and_a_channel(page, client, tmp_path):
    plane, _ = nuclei(24, size=128)
    stack = np.stack([stains(24, plane)] * 3)  # Z, C, Y, X
    data = ome_tiff(stack, "ZCYX", CHANNELS, pixel_size_um=0.5)
    (tmp_path / "stack.ome.tif").write_bytes(data)
    params = {"z": "max", "channel": "dapi"}
    expected = client.post("/count", files={"files": ("stack.ome.tif", data)}, params=params)
    assert expected.status_code == 200, expected.text

    page.set_input_files("#file-input", str(tmp_path / "stack.ome.tif"))
    item = card(page, "stack.ome.tif")
    expect(item).to_have_attribute("data-status", "error")
    expect(item).to_contain_text("z=max")

    page.fill("#channel", "dapi")
    page.fill("#z-plane", "max")
    page.click("#recount-button")
    expect(item).to_have_attribute("data-status", "done")
    expect(item.locator("[data-role='count']")).to_have_text(
        str(expected.json()["results"][0]["count"])
    )
    expect(item.locator("[data-role='meta']")).to_contain_text("channel DAPI")
    expect(item.locator("[data-role='meta']")).to_contain_text("z max")
    expect(item.locator("[data-role='meta']")).to_contain_text("cells/mm²")

    page.fill("#z-plane", "top")
    page.click("#recount-button")
    expect(page.locator("#options-error")).to_contain_text("plane index or max")
