"""In a real browser: the App's "Sort by text similarity" box, used on the clips view of the
moments windows, ranks the windows as numpy ranks their stored embeddings, and the Operator
browser lists the moments operators. Needs Debian's ``chromium`` and ``playwright``; the
screenshot is kept in ``tests/artifacts/``."""

from __future__ import annotations

import numpy as np
import pytest
from test_browser import _open_app, _shot, browser  # noqa: F401  (the browser fixture)

from fiftyone_videoprism.fo import moments
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

pytest_plugins = ["fo_fixtures"]
pytestmark = pytest.mark.browser

QUERY = "a video of red."


@pytest.fixture()
def windows_dataset(installed_plugin, zoo_registered, tiny_models, long_videos,
                    moments_dataset):
    dataset = moments_dataset([long_videos["moving_rgb"], long_videos["moving_bgr"]])
    lvt = VideoPrismModel(VideoPrismModelConfig(tiny_models.lvt))
    moments.compute_moments(dataset, lvt, window_seconds=2.0, stride_seconds=1.0)
    dataset.save_view("windows", dataset.to_clips("videoprism_windows"))
    return dataset, lvt


def test_text_search_on_the_windows_clips_view(windows_dataset, app_url, browser):  # noqa: F811
    dataset, lvt = windows_dataset
    ids, vectors = moments.window_store(dataset).values(["window_id", "embedding"])
    scores = np.stack(vectors) @ lvt.embed_prompt(QUERY)
    expected = [ids[i] for i in np.argsort(-scores, kind="stable")]

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    pages: list[list[str]] = []
    _open_app(page, app_url, dataset, pages, view="windows")
    assert pages and set(pages[-1]) <= set(ids)  # the grid shows the windows' clips
    page.locator("body").press("`")
    page.keyboard.type("moments")
    for label in ("Compute moments", "Find moments", "Tag moments"):
        page.get_by_text(f"{label} (VideoPrism)").wait_for(timeout=30_000)
    page.keyboard.press("Escape")

    page.locator('svg[data-testid="SearchIcon"]').first.click()
    box = page.get_by_placeholder("Type anything!")
    box.fill(QUERY)
    box.press("Enter")
    page.get_by_text("Completed").first.wait_for(timeout=120_000)
    _shot(page, "browser_moments.png")
    # The panel ranked the clips view's windows; its stored run holds the ranking. (Its "Show
    # results" button selects those IDs on the dataset and drops the clips stage in FiftyOne
    # 1.22, so the grid would show nothing: the Find moments operator opens the clips view.)
    from fiftyone.operators.store import ExecutionStore

    store = ExecutionStore.create("similarity_search_panel", dataset._doc.id)
    runs = [store.get(key) for key in store.list_keys() if key.startswith("run:")]
    done = [r for r in runs if r and r.get("status") == "completed"]
    assert len(done) == 1 and done[0]["result_ids"] == expected
