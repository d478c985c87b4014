"""A real browser (Debian's chromium driven by Playwright) uses the app as a visitor would."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from greenlens.examples import example_files

from .conftest import ROOT

SCREENSHOT = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "artifacts")) / "app.png"


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("chromium not installed (.ci/run installs Debian's chromium)")
    return path


def test_visitor_classifies_an_uploaded_leaf_and_a_cactus_tile(app_url):
    playwright = pytest.importorskip("playwright.sync_api")
    leaf_examples, cactus_examples = example_files("leaf"), example_files("cactus")
    if not leaf_examples or not cactus_examples:
        pytest.skip("example images not copied in (make examples with the data folder present)")
    executable = chromium_path()
    url = app_url
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url, wait_until="networkidle")
        page.get_by_text("Leaf health and aerial cactus classifiers").first.wait_for()

        leaf_path, leaf_label = next((p, label) for p, label in leaf_examples if label == "leaf scorch")
        page.locator("input[type=file]").first.set_input_files(str(leaf_path))
        page.get_by_role("button", name="Classify").first.click()
        expect = playwright.expect
        expect(page.locator("[data-testid=label-output-value]").first).to_contain_text(leaf_label, timeout=60_000)

        page.get_by_label("Show where the model looks (Grad-CAM)").first.check()
        expect(page.locator("#heat-leaf img")).to_be_visible(timeout=60_000)

        page.get_by_role("tab", name="Aerial cactus").click()
        cactus_path, cactus_label = next((p, label) for p, label in cactus_examples if label == "cactus")
        panel = page.get_by_role("tabpanel").filter(has=page.get_by_role("button", name="Classify"))
        panel.locator("input[type=file]").first.set_input_files(str(cactus_path))
        panel.get_by_role("button", name="Classify").click()
        expect(panel.locator("[data-testid=label-output-value]").first).to_have_text(cactus_label, timeout=60_000)

        page.get_by_role("tab", name="Leaf health").click()
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
