"""End to end in a real browser: headless Chromium opens the FiftyOne App on loopback, the
Operator browser lists the plugin's operators, and a text query typed into the App's
"Sort by text similarity" box, over an index built by the plugin, reorders the grid.

Needs Debian's ``chromium`` and the ``playwright`` Python package (no downloaded browser).
The screenshot is kept in ``tests/artifacts/``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from fo_fixtures import ROOT, build_text_index, expected_ranking, unique_name

import fiftyone as fo

# The fixtures (database, zoo and plugins folders, tiny models, videos, the App server) live in
# tests/fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]
pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags that let Chromium run headless as root in a container, without reaching the network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "tests" / "artifacts"
QUERIES = ["a video of a red ball.", "a green car is driving on the road.",
           "a blue ball and a red ball.", "a person swimming in the pool."]


@pytest.fixture()
def indexed_dataset(installed_plugin, tiny_models, color_videos):
    """Blue, green, red clips, indexed by the plugin's build_text_index operator."""
    dataset = fo.Dataset(unique_name("browser"), persistent=True)
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in reversed(color_videos.values())])
    build_text_index(dataset, tiny_models, "vp")
    yield dataset
    dataset.delete()


@pytest.fixture()
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def _grid_ids(body: dict) -> list[str] | None:
    """Sample IDs of a grid page in a GraphQL response, or None for other responses."""
    samples = (body.get("data") or {}).get("samples")
    if not isinstance(samples, dict) or "edges" not in samples:
        return None
    return [edge["node"]["id"] for edge in samples["edges"]]


def test_text_search_in_the_app_reorders_the_grid(indexed_dataset, app_url, browser,
                                                  tiny_models) -> None:
    dataset = indexed_dataset
    insertion = dataset.values("id")
    query = next((q for q in QUERIES if expected_ranking(dataset, q, "vp", tiny_models) != insertion), None)
    assert query is not None, "every query ranks the clips in insertion order"
    expected = expected_ranking(dataset, query, "vp", tiny_models)

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    pages: list[list[str]] = []

    def record(response) -> None:
        if response.url.endswith("/graphql") and response.ok:
            ids = _grid_ids(response.json())
            if ids is not None:
                pages.append(ids)

    page.on("response", record)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.goto(f"{app_url}/datasets/{dataset.name}")
    page.locator('[title="Click to expand"]').first.wait_for(timeout=120_000)
    assert pages[-1] == insertion
    dismiss = page.get_by_text("Dismiss")
    if dismiss.count():
        dismiss.click()

    # The Operator browser (backtick) lists the four operators by their labels.
    page.locator("body").press("`")
    page.keyboard.type("VideoPrism")
    for label in ("Compute embeddings", "Zero-shot tag", "Build text index", "Search by text"):
        page.get_by_text(f"{label} (VideoPrism)").wait_for(timeout=30_000)
    page.keyboard.press("Escape")

    # The grid's "Sort by text similarity" box: type the query, press Enter.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    before = len(pages)
    page.locator('svg[data-testid="SearchIcon"]').first.click()
    box = page.get_by_placeholder("Type anything!")
    box.fill(query)
    box.press("Enter")
    # FiftyOne 1.22 runs the search in its Similarity Search panel; the finished search's
    # "Show results" button loads the ranking into the grid. That button sits in a toolbar
    # revealed on hover (pointer-events off until then), hence the forced click.
    page.get_by_text("Completed").first.wait_for(timeout=120_000)
    page.get_by_label("Show results").first.click(force=True)
    deadline = time.monotonic() + 120
    while len(pages) == before or pages[-1] != expected:
        if time.monotonic() > deadline:
            page.screenshot(path=str(ARTIFACTS / "browser_text_search_failed.png"))
            pytest.fail(f"grid pages seen: {pages}, expected {expected}; errors: {errors}")
        page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "browser_text_search.png"))
