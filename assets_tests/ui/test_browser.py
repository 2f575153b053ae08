"""What a user sees in the Dagster UI, driven in headless Chromium against a real ``dagster dev``.

One test walks the whole story, because each step needs the server and the run of the steps
before it: both groups and their lineage in the asset graph, a partition of ``final_flatfield``
materialized by clicking through the UI, the run's success, the passed checks, the thumbnail and
the upstream lineage. Every fact shown in the browser is also asserted through Dagster's GraphQL
API. Screenshots of each step are written to ``test-artifacts/ui/``.
"""

from __future__ import annotations

import base64
import re
from itertools import pairwise
from typing import TYPE_CHECKING

import pytest

from assets_tests.ui.conftest import LOCATION, DagsterUI
from assets_tests.ui.graphql import AssetNode, markdown_images

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.ui

FLATFIELD_CHAIN = (
    "ser_median",
    "dust_mask",
    "inpainted",
    "matched_inpaint",
    "final_flatfield",
    "calibrated_video",
)
TRANSIENTS_CHAIN = ("job_tensors", "master_index", "croissant_metadata", "cnn_model")
GROUPS = {"flatfield": FLATFIELD_CHAIN, "transients": TRANSIENTS_CHAIN}
PARTITIONS = {"flatfield": "ser_files", "transients": None}
TARGET = "final_flatfield"
RUN_TIMEOUT_S = 150.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Each step of the default multiprocess executor starts a Python process that imports the whole
# code location (torch included), about 15 s each on two busy cores; the launchpad's run config
# runs the steps in the run's own process instead, as a user on a small machine would.
IN_PROCESS_RUN_CONFIG = "execution: {config: {in_process: {}}}"

# The asset graph is an SVG: each asset is a <foreignObject> box holding its name, each lineage
# edge a <path> with an arrow marker from the upstream box to the downstream one. Edges are
# attributed to the boxes nearest to their two ends, so the test reads the lineage as drawn.
READ_GRAPH_JS = """
([names, edgeCount]) => {
  const svg = [...document.querySelectorAll('svg')].find((s) => s.querySelector('foreignObject'));
  if (!svg) return null;
  const boxes = [];
  for (const box of svg.querySelectorAll('foreignObject')) {
    const leaves = [...box.querySelectorAll('*')].filter((el) => el.childElementCount === 0);
    const texts = new Set(leaves.map((el) => el.textContent.trim()));
    const label = names.find((name) => texts.has(name));
    if (label) {
      const [x, y, w, h] = ['x', 'y', 'width', 'height'].map((a) => +box.getAttribute(a));
      boxes.push({label, x, y, w, h});
    }
  }
  const distance = ([px, py], b) =>
    Math.hypot(Math.max(b.x - px, 0, px - b.x - b.w), Math.max(b.y - py, 0, py - b.y - b.h));
  const nearest = (point) =>
    boxes.map((b) => [distance(point, b), b.label]).sort((p, q) => p[0] - q[0])[0] ||
    [Infinity, null];
  const edges = [];
  for (const path of svg.querySelectorAll('path[marker-end]')) {
    const numbers = (path.getAttribute('d') || '').match(/-?\\d+(?:\\.\\d+)?/g) || [];
    if (numbers.length < 4) continue;
    const [startGap, source] = nearest([+numbers[0], +numbers[1]]);
    const [endGap, target] = nearest([+numbers.at(-2), +numbers.at(-1)]);
    edges.push({source, target, gap: Math.max(startGap, endGap)});
  }
  const labels = boxes.map((b) => b.label);
  const complete = names.every((n) => labels.includes(n)) && edges.length >= edgeCount;
  return {labels, edges, complete};
}
"""
WAIT_FOR_GRAPH_JS = f"""
(args) => {{
  const graph = ({READ_GRAPH_JS})(args);
  return graph && graph.complete ? graph : null;
}}
"""
EDGE_END_TOLERANCE_PX = 30.0
# An asset box shows this until its live status (latest event, checks, partitions) arrives.
STATUS_LOADING = re.compile(r"^Loading(\.\.\.|…)$")


def upstream_of(nodes: dict[str, AssetNode], asset: str) -> set[str]:
    """Every asset ``asset`` depends on, directly or not."""
    found: set[str] = set()
    pending = list(nodes[asset].dependencies)
    while pending:
        key = pending.pop()
        if key not in found:
            found.add(key)
            pending.extend(nodes[key].dependencies)
    return found


def lineage_edges(nodes: dict[str, AssetNode], assets: set[str]) -> set[tuple[str, str]]:
    """The ``(upstream, downstream)`` pairs among ``assets``."""
    return {
        (dependency, key)
        for key in assets
        for dependency in nodes[key].dependencies
        if dependency in assets
    }


def drawn_lineage(
    page: Page, expect, assets: set[str], edge_count: int
) -> tuple[set[str], set[tuple[str, str]]]:
    """Wait until the graph on the page shows ``assets`` and ``edge_count`` edges; read it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    names = sorted(assets)
    try:
        handle = page.wait_for_function(WAIT_FOR_GRAPH_JS, arg=[names, edge_count])
    except PlaywrightTimeoutError:
        shown = page.evaluate(READ_GRAPH_JS, [names, edge_count])
        pytest.fail(f"the graph never showed {names} with {edge_count} edges; it showed {shown}")
    graph = handle.json_value()
    expect(page.get_by_text(STATUS_LOADING)).to_have_count(0)
    far = [edge for edge in graph["edges"] if edge["gap"] > EDGE_END_TOLERANCE_PX]
    assert not far, f"edges whose ends touch no asset box: {far}"
    edges = {(edge["source"], edge["target"]) for edge in graph["edges"]}
    return set(graph["labels"]), edges


def shown_text(scope, text: str):
    """The first visible element whose whole text is ``text``.

    Names the UI truncates are also kept, hidden, at full length for measuring; those never
    count as shown.
    """
    return scope.get_by_text(text, exact=True).filter(visible=True).first


def show_upstream_lineage(page: Page, expect) -> None:
    """On an asset page: the Lineage tab, upstream only, at full depth."""
    page.get_by_role("tab", name="Lineage").click()
    page.get_by_role("button", name="Upstream").click()
    expect(page).to_have_url(re.compile(r"lineageScope=upstream"))
    full_depth = page.get_by_role("button", name="All", exact=True)
    expect(full_depth).to_be_visible()
    # Disabled when the depth shown already reaches the most distant upstream asset.
    if full_depth.is_enabled():
        full_depth.click()


def both_groups_shown_with_their_lineage(
    page: Page, expect, screenshot, nodes: dict[str, AssetNode]
) -> None:
    """The API and the asset graph: every asset in its group, every lineage edge drawn."""
    assert {key: node.group for key, node in nodes.items()} == {
        key: group for group, chain in GROUPS.items() for key in chain
    }
    for group, chain in GROUPS.items():
        for upstream, downstream in pairwise(chain):
            assert upstream in nodes[downstream].dependencies, (upstream, downstream)
        assert nodes[chain[0]].dependencies == frozenset(), chain[0]
        if PARTITIONS[group] is not None:
            assert {nodes[key].partitions for key in chain} == {PARTITIONS[group]}
    assert nodes["job_tensors"].partitions == "jids"

    page.goto("/asset-groups")
    for group in GROUPS:
        expect(shown_text(page, group)).to_be_visible()
    screenshot("global-lineage")

    for group, chain in GROUPS.items():
        page.goto(f"/locations/{LOCATION}/asset-groups/{group}")
        expected_edges = lineage_edges(nodes, set(chain))
        labels, edges = drawn_lineage(page, expect, set(chain), len(expected_edges))
        screenshot(f"group-{group}")
        assert labels == set(chain)
        assert edges == expected_edges


def launch_from_the_ui(
    page: Page, expect, screenshot, partition: str, selection: set[str], edge_count: int
) -> str:
    """Asset page, upstream lineage, Materialize all, the partition, launch: the new run's id.

    ``selection`` is ``TARGET`` with everything upstream of it, drawn with ``edge_count`` edges.
    """
    page.goto(f"/assets/{TARGET}")
    expect(page.get_by_role("tab", name="Overview")).to_be_visible()
    screenshot("asset-page-before")

    show_upstream_lineage(page, expect)
    labels, _ = drawn_lineage(page, expect, selection, edge_count)
    assert labels == selection
    screenshot("lineage-upstream-before")

    page.get_by_role("button", name="Materialize all").click()
    launch = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    expect(launch).to_contain_text(f"{len(selection)} assets")
    launch.get_by_text("Select a partition or create one").click()
    shown_text(page.get_by_role("menu"), partition).click()
    launch.get_by_text("Launch runs to materialize").click()
    expect(launch).to_contain_text("1 partition")

    launch.get_by_text("Config", exact=True).click()
    launch.get_by_role("button", name="Add config").click()
    editor = page.get_by_role("dialog").filter(has_text="Config Editor")
    code = editor.locator(".CodeMirror, .cm-editor").first
    code.click()
    page.keyboard.insert_text(IN_PROCESS_RUN_CONFIG)
    expect(code).to_contain_text("in_process")
    expect(editor.get_by_text("No errors")).to_be_visible()
    screenshot("launchpad-config")
    editor.get_by_role("button", name="Save config").click()
    expect(editor).to_be_hidden()
    screenshot("launch-dialog")

    launch.get_by_role("button", name="Launch 1 run").click()
    toast = page.get_by_role("listitem").filter(has_text="Launched run")
    view_run = toast.get_by_role("link", name="View")
    expect(view_run).to_be_visible()
    run_id = view_run.get_attribute("href").rstrip("/").rsplit("/", 1)[-1]
    view_run.click()
    expect(page).to_have_url(re.compile(f"/runs/{run_id}"))
    screenshot("run-page")
    return run_id


def run_succeeded(
    page: Page, expect, screenshot, dagster_ui: DagsterUI, run_id: str, selection: set[str]
) -> None:
    """The run ends in success, on its page and in the API, for the partition and the assets."""
    api = dagster_ui.graphql
    status = api.wait_for_run(run_id, RUN_TIMEOUT_S)
    assert status == "SUCCESS", f"run {run_id} ended {status}; see {dagster_ui.log_path}"
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    screenshot("run-succeeded")
    run = api.run(run_id)
    assert run["tags"]["dagster/partition"] == dagster_ui.partition
    assert run["tags"]["dagster/from_ui"] == "true"
    assert run["assetSelection"] == selection
    assert "in_process" in run["runConfigYaml"]


def checks_passed(
    page: Page, expect, screenshot, dagster_ui: DagsterUI, run_id: str, checks: set[str]
) -> None:
    """Each check of ``TARGET`` passed in the run: in the API and on the Checks tab."""
    for check in sorted(checks):
        executions = [
            execution
            for execution in dagster_ui.graphql.check_executions(TARGET, check)
            if execution.run_id == run_id
        ]
        assert [(e.status, e.partition, e.passed) for e in executions] == [
            ("SUCCEEDED", dagster_ui.partition, True)
        ], check

    page.goto(f"/assets/{TARGET}")
    page.get_by_role("tab", name="Checks").click()
    for check in sorted(checks):
        entry = page.get_by_title(check, exact=True)
        expect(entry.locator("xpath=..")).to_contain_text("Succeeded")
        entry.click()
        expect(page).to_have_url(re.compile(f"checkDetail={check}"))
        expect(shown_text(page, check)).to_be_visible()
        expect(shown_text(page, "Passed")).to_be_visible()
        screenshot(f"check-{check}")


def thumbnail_shown(
    page: Page,
    expect,
    screenshot,
    dagster_ui: DagsterUI,
    run_id: str,
    nodes: dict[str, AssetNode],
) -> None:
    """The run's ``preview`` markdown holds one PNG, shown as an image on the asset page."""
    materialization = dagster_ui.graphql.latest_materialization(TARGET, dagster_ui.partition)
    assert materialization["run_id"] == run_id
    preview_markdown = materialization["metadata"]["preview"]
    images = markdown_images(preview_markdown)
    assert len(images) == 1, preview_markdown[:200]
    alt, source = images[0]
    header, _, payload = source.partition(",")
    assert header == "data:image/png;base64"
    assert base64.b64decode(payload).startswith(PNG_SIGNATURE)

    page.goto(f"/assets/{TARGET}")
    expect(shown_text(page, dagster_ui.partition)).to_be_visible()
    for dependency in nodes[TARGET].dependencies:
        named = re.compile(rf"(^|\s){re.escape(dependency)}(\s|$)")
        expect(page.get_by_role("link", name=named).first).to_be_visible()
    preview_row = page.get_by_role("row").filter(
        has=page.get_by_role("cell", name="preview", exact=True)
    )
    preview_row.get_by_text("Show Markdown").click()
    preview = page.get_by_role("dialog").filter(has_text="preview")
    thumbnail = preview.get_by_role("img", name=alt)
    expect(thumbnail).to_be_visible()
    assert thumbnail.get_attribute("src") == source
    assert thumbnail.evaluate("image => image.complete && image.naturalWidth > 0")
    screenshot("thumbnail")
    preview.get_by_role("button", name="Close").click()
    expect(preview).to_be_hidden()


def test_flatfield_operated_from_the_ui(
    page: Page, expect, dagster_ui: DagsterUI, screenshot
) -> None:
    api = dagster_ui.graphql
    nodes = api.asset_nodes()
    both_groups_shown_with_their_lineage(page, expect, screenshot, nodes)

    selection = upstream_of(nodes, TARGET) | {TARGET}
    upstream_edges = lineage_edges(nodes, selection)
    checks = set(api.asset_check_names(TARGET))
    assert checks, f"{TARGET} has no checks"
    runs_before = api.run_ids()
    run_id = launch_from_the_ui(
        page, expect, screenshot, dagster_ui.partition, selection, len(upstream_edges)
    )
    assert run_id in api.run_ids() - runs_before

    run_succeeded(page, expect, screenshot, dagster_ui, run_id, selection)
    thumbnail_shown(page, expect, screenshot, dagster_ui, run_id, nodes)
    checks_passed(page, expect, screenshot, dagster_ui, run_id, checks)

    show_upstream_lineage(page, expect)
    labels, edges = drawn_lineage(page, expect, selection, len(upstream_edges))
    screenshot("lineage-upstream-after")
    assert labels == selection
    assert edges == upstream_edges
