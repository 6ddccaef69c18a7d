"""From what is on screen to a run: the selection of the visible view, then actions → plan → progress.

`selection_of` reads what the user marked (space, `*`) in the view on screen, or
the row under the cursor when nothing is marked, as snapshot objects. `act_on`
is the whole flow, run in an app worker: the playbooks for the selection
(ActionsScreen), the plan and its confirmation (PlanScreen), then the run
(ProgressScreen): executed at once as the requester when its playbook needs no
approval, else left awaiting approval, with who may approve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.app import App

from gpuctl.model import Alert, GpuPod, NamespaceUsage, Node
from gpuctl.query.fleet import FleetIndex
from gpuctl.tui.alerts_view import AlertsView
from gpuctl.tui.heatmap_view import HeatmapView
from gpuctl.tui.nodes_view import NodesView
from gpuctl.tui.playbooks.actions_screen import ActionsScreen, Chosen
from gpuctl.tui.playbooks.desk import Desk
from gpuctl.tui.playbooks.offers import Selection
from gpuctl.tui.playbooks.plan_screen import PlanScreen
from gpuctl.tui.playbooks.progress_screen import ProgressScreen
from gpuctl.tui.pods_view import PodsView
from gpuctl.tui.quotas_view import QuotasView
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.rows import NodeItem


def _picked(table: RowTable[Any], *, fallback: bool) -> Sequence[Any]:
    """The marked rows; without marks, the cursor's row when `fallback`."""
    if table.marked or fallback:
        return table.selection
    return ()


def _present(names: Sequence[str | None], known: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(known[n] for n in dict.fromkeys(names) if n is not None and n in known)


def selection_of(view: object, index: FleetIndex) -> Selection:
    """What `a` acts on in `view` (one of the app's five views)."""
    if isinstance(view, HeatmapView):
        node_names, pool_names = view.heatmap.selection()
        return Selection(nodes=_present(node_names, index.nodes), pools=tuple(pool_names))
    if isinstance(view, NodesView):
        pools_table = view.query_one("#pools-table", RowTable)
        nodes_table = view.query_one("#nodes-table", RowTable)
        pools = [p.name for p in _picked(pools_table, fallback=pools_table.has_focus)]
        items: Sequence[NodeItem] = _picked(nodes_table, fallback=not pools and not pools_table.marked)
        return Selection(nodes=tuple(i.node for i in items), pools=tuple(pools))
    if isinstance(view, PodsView):
        pods: Sequence[GpuPod] = view.table.selection
        return Selection(pods=tuple(pods))
    if isinstance(view, QuotasView):
        spaces: Sequence[NamespaceUsage] = view.query_one(RowTable).selection
        return Selection(namespaces=tuple(spaces))
    if isinstance(view, AlertsView):
        alerts: Sequence[Alert] = view.query_one(RowTable).selection
        pod_keys = [f"{a.namespace}/{a.pod}" for a in alerts if a.pod and a.namespace]
        alert_nodes: tuple[Node, ...] = _present([a.node for a in alerts if not a.pod], index.nodes)
        spaces_named = _present([a.namespace for a in alerts if not a.pod], index.namespaces)
        return Selection(pods=_present(pod_keys, index.pods), nodes=alert_nodes, namespaces=spaces_named)
    return Selection()


async def act_on(app: App[Any], desk: Desk, selection: Selection) -> None:
    """The flow for one selection (run it in a worker: it waits for each screen's answer)."""
    chosen: Chosen | None = await app.push_screen_wait(ActionsScreen(selection, desk))
    if chosen is None:
        return
    submitted = await app.push_screen_wait(PlanScreen(chosen.offer, chosen.playbook, desk))
    if submitted is None:
        return
    engine = await desk.engine()
    task = None if submitted.needs_approval or submitted.duplicate else desk.execute(engine, submitted)
    await app.push_screen(
        ProgressScreen(submitted.run_id, desk, submitted=submitted, task=task, reversible=chosen.playbook.reversible)
    )
