"""End to end in a real browser: headless Chromium opens the FiftyOne App on loopback, the
Operator browser lists the plugin's operators, and a text query typed into the App's
"Sort by text similarity" box, over an index built by the plugin, reorders the grid. On a
dataset made by the CLI, the Embeddings panel plots the plugin's map, and an operator run from
the App ends on its results panel: the label distribution, and a button that opens the view it
names.

Needs Debian's ``chromium`` and the ``playwright`` Python package (no downloaded browser).
Screenshots are kept in ``tests/artifacts/``; ``FVP_DOCS_SCREENSHOTS=1`` also writes the
README's pictures into ``docs/``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from fo_fixtures import COLORS, ROOT, build_text_index, expected_ranking, unique_name
from videogen import moving_shape_frames, write_video

import fiftyone as fo

from fiftyone_videoprism.fo.cli import main

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
DOCS = ROOT / "docs"
# Backgrounds of the map dataset's clips: 3 colours x 4 backgrounds.
BACKGROUNDS = [(128, 128, 128), (20, 20, 20), (235, 235, 235), (90, 60, 30)]
# A template under which the tiny random-weight model gives more than one label to them.
TEMPLATE = "a {} square on a grey field."
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
def cli_dataset(tiny_models, tmp_path):
    """Twelve clips (three square colours over four backgrounds) made into a dataset by
    ``fiftyone-videoprism embed --classes red,green,blue``: embeddings, index, zero-shot
    labels and the embeddings map."""
    folder = tmp_path / "clips"
    folder.mkdir()
    for color, rgb in COLORS.items():
        for i, background in enumerate(BACKGROUNDS):
            write_video(folder / f"{color}_{i}.mp4",
                        moving_shape_frames(12, rgb, 64, 48, background=background))
    name = unique_name("browser-cli")
    lvt = tiny_models.lvt
    assert main(["embed", str(folder), "--dataset", name, "--classes", ",".join(COLORS),
                 "--template", TEMPLATE, "--model-config", lvt["model_config"], "--checkpoint", lvt["checkpoint_path"],
                 "--tokenizer", lvt["tokenizer_path"]]) == 0
    dataset = fo.load_dataset(name)
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


def _shot(page, name: str, *, docs: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))
    if docs and os.environ.get("FVP_DOCS_SCREENSHOTS"):
        page.screenshot(path=str(DOCS / name))


def _open_app(page, app_url: str, dataset, pages: list[list[str]],
              view: str | None = None) -> None:
    """Opens the App's grid on ``dataset`` (its saved ``view``, if given), recording every
    grid page into ``pages``."""
    def record(response) -> None:
        if response.url.endswith("/graphql") and response.ok:
            ids = _grid_ids(response.json())
            if ids is not None:
                pages.append(ids)

    page.on("response", record)
    page.goto(f"{app_url}/datasets/{dataset.name}" + (f"?view={view}" if view else ""))
    page.locator('[title="Click to expand"]').first.wait_for(timeout=120_000)
    _dismiss(page)


def _dismiss(page) -> None:
    dismiss = page.get_by_text("Dismiss", exact=True)
    if dismiss.count():
        dismiss.first.click()


def _wait_for_grid(page, pages: list[list[str]], expected: list[str], before: int,
                   shot: str, *, errors: list[str] = ()) -> None:
    """Waits until a grid page after the first ``before`` shows ``expected``."""
    deadline = time.monotonic() + 120
    while len(pages) == before or pages[-1] != expected:
        if time.monotonic() > deadline:
            _shot(page, shot)
            pytest.fail(f"grid pages seen: {pages}, expected {expected}; errors: {errors}")
        page.wait_for_timeout(500)


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
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    _open_app(page, app_url, dataset, pages)
    assert pages[-1] == insertion

    # The Operator browser (backtick) lists the four operators by their labels.
    page.locator("body").press("`")
    page.keyboard.type("VideoPrism")
    for label in ("Compute embeddings", "Zero-shot tag", "Build text index", "Search by text"):
        page.get_by_text(f"{label} (VideoPrism)").wait_for(timeout=30_000)
    page.keyboard.press("Escape")

    # The grid's "Sort by text similarity" box: type the query, press Enter.
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
    _wait_for_grid(page, pages, expected, before, "browser_text_search_failed.png",
                   errors=errors)
    _shot(page, "browser_text_search.png")


def test_embeddings_panel_plots_the_cli_map(cli_dataset, app_url, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    _open_app(page, app_url, cli_dataset, [])
    # The sidebar's zero-shot field, expanded.
    page.locator('[data-cy="sidebar-field-container-videoprism_zero_shot"] svg').last.click()
    # A new panel beside the grid (the "+" in the tab bar), then the Embeddings panel.
    add = page.locator('svg[data-testid="AddIcon"]')
    next(add.nth(i) for i in range(add.count())
         if (add.nth(i).bounding_box() or {"y": 1e9})["y"] < 110).click()
    page.get_by_text("Embeddings", exact=True).last.click()
    page.get_by_text("videoprism_map").first.wait_for(timeout=60_000)
    _dismiss(page)
    page.get_by_text("videoprism_map").first.click()
    page.get_by_text(f"{len(cli_dataset)} points").wait_for(timeout=60_000)
    # Coloured by the zero-shot label, the path the CLI printed.
    page.get_by_text("Color by").locator("xpath=following::*[text()='None'][1]").click()
    page.get_by_text("videoprism_zero_shot.label").last.click()
    # The legend: each label with its number of videos.
    counts = cli_dataset.count_values("videoprism_zero_shot.label")
    page.get_by_text("Click to hide").wait_for(timeout=30_000)
    text = page.locator("body").inner_text()
    for label, count in counts.items():
        assert f"{label}\n{count}" in text, (label, count)
    page.wait_for_timeout(1000)
    _shot(page, "embeddings_panel.png", docs=True)


def test_operator_results_show_the_distribution_and_open_the_view(cli_dataset, app_url,
                                                                  browser, tiny_models) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    pages: list[list[str]] = []
    _open_app(page, app_url, cli_dataset, pages)
    page.locator("body").press("`")
    page.keyboard.type("Zero-shot")
    page.get_by_text("Zero-shot tag (VideoPrism)").first.click()

    def fill(label: str, value: str) -> None:
        box = page.locator(f"xpath=//*[text()='{label}']/following::input[1]")
        box.fill(value)
        page.wait_for_timeout(800)  # the form resolves again after each change

    page.get_by_text("Local files", exact=True).click()
    page.get_by_text("Checkpoint", exact=True).wait_for()
    fill("Checkpoint", tiny_models.lvt["checkpoint_path"])
    fill("Architecture (JSON)", tiny_models.lvt["model_config"])
    fill("Tokenizer", tiny_models.lvt["tokenizer_path"])
    fill("Class names", ",".join(COLORS))
    fill("Prompt templates", TEMPLATE)
    fill("Label field", "scene")
    page.get_by_role("button", name="Execute").click()

    page.get_by_text("Label distribution").wait_for(timeout=180_000)
    cli_dataset.reload()
    counts = cli_dataset.count_values("scene.label")
    for label, count in counts.items():
        row = page.locator("tr", has_text=label)
        assert row.count() and str(count) in row.first.inner_text(), (label, count)
    _shot(page, "operator_results.png", docs=True)

    labelled = cli_dataset.exists("scene").sort_by("scene.confidence", reverse=True)
    before = len(pages)
    page.get_by_text(f"Show the {len(labelled)} labelled videos, most confident first").click()
    _wait_for_grid(page, pages, labelled.values("id"), before, "operator_view_failed.png")
    _shot(page, "operator_view.png")
