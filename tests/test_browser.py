"""A real browser (Debian's chromium driven by Playwright) uses the app as a visitor would: uploads,
example thumbnails, Grad-CAM, the batch section and a survey of a georeferenced orthomosaic, whose
result is the README's screenshot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from greenlens.core.examples import example_files

from .conftest import ROOT

SCREENSHOT = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "artifacts")) / "app.png"


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("chromium not installed (.ci/run installs Debian's chromium)")
    return path


@pytest.fixture(scope="module")
def page(app_url):
    playwright = pytest.importorskip("playwright.sync_api")
    if not example_files("leaf") or not example_files("cactus"):
        pytest.skip("example images not copied in (make examples with the data folder present)")
    executable = chromium_path()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(app_url, wait_until="networkidle")
        page.get_by_text("Leaf health and aerial cactus classifiers").first.wait_for()
        yield page, playwright.expect
        browser.close()


def test_visitor_classifies_uploads_and_examples(page):
    page, expect = page
    leaf_examples, cactus_examples = example_files("leaf"), example_files("cactus")
    assert page.get_by_text("lab photos of one detached strawberry leaf").first.is_visible()  # what it cannot know

    leaf_path, leaf_label = next((p, label) for p, label in leaf_examples if label == "leaf scorch")
    page.locator("input[type=file]").first.set_input_files(str(leaf_path))
    page.get_by_role("button", name="Classify").first.click()
    expect(page.locator("[data-testid=label-output-value]").first).to_contain_text(leaf_label, timeout=60_000)

    page.get_by_label("Show where the model looks (Grad-CAM)").first.check()
    expect(page.locator("#heat-leaf img")).to_be_visible(timeout=90_000)  # Grad-CAM waits for the heavy slot

    # The examples are thumbnails with their expected label; a click classifies one.
    thumbnails = page.locator("#examples-leaf img")
    expect(thumbnails).to_have_count(len(leaf_examples))
    healthy = next(i for i, (_, label) in enumerate(leaf_examples) if label == "healthy")
    expect(page.locator("#examples-leaf").get_by_text("expected: healthy").first).to_be_visible()
    thumbnails.nth(healthy).click()
    expect(page.locator("[data-testid=label-output-value]").first).to_have_text("healthy", timeout=60_000)

    page.get_by_role("tab", name="Aerial cactus").click()
    cactus_path, cactus_label = next((p, label) for p, label in cactus_examples if label == "cactus")
    panel = page.get_by_role("tabpanel").filter(visible=True)
    panel.locator("input[type=file]").first.set_input_files(str(cactus_path))
    panel.get_by_role("button", name="Classify", exact=True).click()
    expect(panel.locator("[data-testid=label-output-value]").first).to_have_text(cactus_label, timeout=60_000)

    # The batch section: several files in, the predictions table and its CSV out.
    panel.get_by_text("Batch: many images or a zip").click()
    panel.locator("input[type=file]").nth(1).set_input_files([str(path) for path, _ in cactus_examples[:3]])
    expect(page.get_by_text(cactus_examples[2][0].stem).first).to_be_visible(timeout=60_000)  # uploaded
    panel.get_by_role("button", name="Classify all").click()
    expect(page.get_by_text("cactus_predictions").first).to_be_visible(timeout=60_000)
    for path, _ in cactus_examples[:3]:  # one row per file, with its label (not "[object Object]")
        expect(page.get_by_role("gridcell", name=path.name).first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("[object Object]")).to_have_count(0)


def test_visitor_surveys_an_orthomosaic(page, cactus_dir, tmp_path):
    import numpy as np

    from greenlens.core.images import decode_image

    from .test_survey import MODEL, mosaic, write_geotiff

    page, expect = page
    rows = (MODEL / "test.csv").read_text().splitlines()[1:145]
    tiles = np.stack([decode_image(cactus_dir.parent / row.split(",")[0]) for row in rows])
    ortho = write_geotiff(tmp_path / "reserve.tif", mosaic(tiles))
    page.get_by_role("tab", name="Aerial survey").click()
    panel = page.get_by_role("tabpanel").filter(has=page.get_by_role("button", name="Survey"))
    panel.locator("input[type=file]").first.set_input_files(str(ortho))
    panel.get_by_role("button", name="Survey").click()
    expect(page.locator("#survey-overlay img")).to_be_visible(timeout=120_000)
    expect(panel.get_by_text("cactus_tiles_per_ha").first).to_be_visible(timeout=60_000)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    expect(page.locator("#survey-downloads").get_by_text(".gpkg").first).to_be_visible(timeout=60_000)
    assert SCREENSHOT.stat().st_size > 10_000
