"""What an operator shows when its run ends: the counts written and failed, the label
distribution, and buttons that open the views the run produced (the failures, the labelled
videos, the matches, the map), in the App's output panel.

Every operator of the plugin ends through :func:`show_results`, so the panel looks the same
whatever ran; a new operator passes its own distribution and views.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import fiftyone.operators.types as types
from bson import json_util

# FiftyOne's built-in App operators that the buttons trigger.
_SET_VIEW = "set_view"
_OPEN_PANEL = "open_panel"
# Distribution rows shown; the rest are summed into one row.
_MAX_ROWS = 20


@dataclasses.dataclass(frozen=True)
class ViewLink:
    """A button that loads ``view`` into the App's grid."""

    label: str
    view: Any  # a fiftyone.core.view.DatasetView


@dataclasses.dataclass(frozen=True)
class PanelLink:
    """A button that opens an App panel (e.g. the Embeddings panel on a map)."""

    label: str
    panel: str
    state: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class OperatorLink:
    """A button that opens another operator's form, filled with ``params``."""

    label: str
    operator: str  # its URI
    params: Mapping[str, Any] | None = None


Link = ViewLink | PanelLink | OperatorLink


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The end of a run, as the output panel shows it.

    Attributes:
        message: one line saying what was done (also the App notification)
        written: samples whose result was stored
        failed: samples that failed
        error_field: where the failures' errors are (their button opens them)
        distribution: label -> count, shown as a table, most frequent first
        links: buttons, in order
        notes: expected degradations of this run (e.g. no fast BLAS), one warning each
    """

    message: str
    written: int | None = None
    failed: int = 0
    error_field: str | None = None
    distribution: Mapping[str, int] | None = None
    links: Sequence[Link] = ()
    notes: Sequence[str] = ()


def failures_link(samples, error_field: str | None, failed: int) -> list[ViewLink]:
    """The button that opens the samples of ``samples`` whose error field is set (none when
    nothing failed)."""
    if not failed or not error_field or not samples.has_field(error_field):
        return []
    noun = "failure" if failed == 1 else "failures"
    return [ViewLink(f"Show the {failed} {noun} ('{error_field}')", samples.exists(error_field))]


def distribution_rows(distribution: Mapping[str, int]) -> list[dict[str, Any]]:
    """Table rows ``{"label", "count", "share"}``, most frequent first; beyond ``_MAX_ROWS``
    labels the rest are one "(N other labels)" row."""
    total = sum(distribution.values()) or 1
    ranked = sorted(distribution.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) > _MAX_ROWS:
        rest = ranked[_MAX_ROWS - 1:]
        ranked = ranked[:_MAX_ROWS - 1] + [(f"({len(rest)} other labels)",
                                            sum(count for _, count in rest))]
    return [{"label": label, "count": count, "share": f"{100 * count / total:.0f}%"}
            for label, count in ranked]


def results_panel(result: RunResult) -> tuple[types.Property, dict[str, Any]]:
    """The output schema and the values it shows."""
    outputs = types.Object()
    values: dict[str, Any] = {}
    outputs.str("message", label="Done", view=types.Notice(label=result.message)
                if not result.failed else types.Warning(label=result.message))
    values["message"] = result.message
    if result.written is not None:
        outputs.int("written", label="Written")
        outputs.int("failed", label="Failed")
        values.update(written=result.written, failed=result.failed)
    if result.distribution:
        table = types.TableView()
        table.add_column("label", label="Label")
        table.add_column("count", label="Videos")
        table.add_column("share", label="Share")
        outputs.list("distribution", types.Object(), label="Label distribution", view=table)
        values["distribution"] = distribution_rows(result.distribution)
    for i, link in enumerate(result.links):
        outputs.view(f"link_{i}", _button(link))
    for i, note in enumerate(result.notes):
        outputs.view(f"note_{i}", types.Warning(label=note))
    return types.Property(outputs, view=types.View(label="VideoPrism results")), values


def show_results(ctx, result: RunResult) -> Generator[Any, None, None]:
    """Ends an operator's run: reloads the dataset, notifies, and shows the results panel
    (immediate runs only: a delegated run has no App to show them; its counts are in its
    run document's progress label)."""
    if ctx.delegated:
        ctx.set_progress(progress=1.0, label=result.message)
        return
    yield ctx.ops.reload_dataset()
    yield ctx.ops.notify(result.message, variant="warning" if result.failed else "success")
    outputs, values = results_panel(result)
    yield ctx.ops.show_output(outputs.to_json(), values)


def serialize_view(view) -> list[dict[str, Any]]:
    """A view's stages as the App's ``set_view`` operator takes them (plain JSON)."""
    return json.loads(json_util.dumps(view._serialize()))


def _button(link: Link) -> types.Button:
    if isinstance(link, ViewLink):
        return types.Button(label=link.label, operator=_SET_VIEW,
                            params={"view": serialize_view(link.view)})
    if isinstance(link, OperatorLink):
        return types.Button(label=link.label, operator=link.operator,
                            params=dict(link.params or {}), prompt=True)
    return types.Button(label=link.label, operator=_OPEN_PANEL,
                        params={"name": link.panel, "isActive": True,
                                "state": dict(link.state or {})})
