"""`gpuctl top`: the live terminal UI.

The app consumes an `UpdateFeed` in one worker and never does I/O itself.
Each update is indexed once (`FleetIndex`, in a worker thread: at 12,500 GPUs
it is the biggest part of taking an update in, and the event loop must keep
reading the cluster meanwhile) and handed to the visible view only; hidden
views are marked stale and catch up with a full diff when shown, so a
10,000-pod table costs nothing while you look at the heatmap.

Given settings and a feed factory (settings -> feed), the app can also reopen
its feed: another kubeconfig context (`x`) or another refresh interval (`+`,
`-`). The old feed's worker is cancelled, which closes its cluster, before the
new one opens; a failure to open shows in the status bar and as a toast.

`a` (playbooks for the marked rows), `R` (runs) and `L` (audit log) open the
screens of gpuctl.tui.playbooks; they reach the playbook engine through one
`Desk`, opened on first use on the feed's running cluster and closed with the
app or when the feed is reopened for another cluster. They and the engine are imported then, not at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.widgets import Footer, TabbedContent, TabPane
from textual.worker import Worker, WorkerCancelled, WorkerError, WorkerFailed

from gpuctl.config import Settings
from gpuctl.errors import ConfigError, GpuctlError
from gpuctl.identity import Identity
from gpuctl.memory import release_free_memory
from gpuctl.model import Changes, MetricsHealth, Snapshot, Update, WatchHealth
from gpuctl.query.filter import Filter
from gpuctl.query.fleet import FleetIndex
from gpuctl.trace import NO_TRACE, Trace
from gpuctl.tui.alerts_view import AlertsView
from gpuctl.tui.context_screen import ContextScreen
from gpuctl.tui.doctor_screen import Diagnose, DoctorScreen
from gpuctl.tui.feed import FeedFactory, UpdateFeed, running_cluster
from gpuctl.tui.filter_bar import FilterBar
from gpuctl.tui.heatmap import Heatmap
from gpuctl.tui.heatmap_view import HeatmapView
from gpuctl.tui.help_screen import HelpScreen
from gpuctl.tui.history import UtilHistory
from gpuctl.tui.messages import MarksChanged, NodeChosen
from gpuctl.tui.node_screen import NodeScreen
from gpuctl.tui.nodes_view import NodesView
from gpuctl.tui.pods_view import PodsView
from gpuctl.tui.quotas_view import QuotasView
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.service_feed import context_name
from gpuctl.tui.status_bar import StatusBar, interval, pending_retry
from gpuctl.workers import Workers

if TYPE_CHECKING:
    from gpuctl.tui.playbooks.desk import Desk, EngineOpener

TABS: tuple[tuple[str, str], ...] = (
    ("heatmap", "Heatmap"),
    ("nodes", "Nodes"),
    ("pods", "Pods"),
    ("quotas", "Quotas"),
    ("alerts", "Alerts"),
)
View = HeatmapView | NodesView | PodsView | QuotasView | AlertsView
# The refresh intervals `+` and `-` step through, in seconds.
REFRESH_LADDER: tuple[float, ...] = (1, 2, 5, 10, 30, 60)


def step_interval(current: float, direction: int) -> float | None:
    """The next rung above (direction > 0) or below `current`; None at the end of the ladder.

    An interval between rungs (the default 15 s) steps to its neighbours, 30 or 10."""
    if direction > 0:
        return next((r for r in REFRESH_LADDER if r > current), None)
    return next((r for r in reversed(REFRESH_LADDER) if r < current), None)


class GpuctlApp(App[int]):
    """Heatmap, nodes, pods, quotas and alerts of one cluster, live."""

    CSS_PATH = "app.tcss"
    TITLE = "gpuctl top"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Quit gpuctl top"),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="Show every key"),
        Binding(
            "slash", "filter", "Filter", id="app.filter", tooltip="Filter every view (ns: pool: node: pod: model:)"
        ),
        Binding("t", "toggle_theme", "Theme", id="app.theme", tooltip="Switch between the dark and light theme"),
        Binding("D", "doctor", "Doctor", show=False, id="app.doctor", tooltip="Check the cluster against GPU practices"),
        Binding(
            "a", "act", "Act", id="app.act",
            tooltip="Playbooks for the marked rows, or the row under the cursor (space marks, * marks all shown)",
        ),
        Binding("R", "runs", "Runs", show=False, id="app.runs", tooltip="Playbook runs, live: approve or deny them"),
        Binding("L", "audit", "Audit", show=False, id="app.audit", tooltip="The audit log, filterable, verified"),
        Binding(
            "x", "switch_context", "Context", show=False, id="app.context",
            tooltip="Switch to another kubeconfig context (reconnects)",
        ),
        Binding(
            "plus,equals_sign", "refresh_interval(1)", "Slower", show=False, id="app.slower",
            tooltip="Refresh less often (" + ", ".join(f"{r:g}" for r in REFRESH_LADDER) + " s)",
        ),
        Binding(
            "minus", "refresh_interval(-1)", "Faster", show=False, id="app.faster",
            tooltip="Refresh more often",
        ),
        *(
            Binding(
                str(i), f"show_tab('{tab}')", title, show=False, id=f"app.tab.{tab}", tooltip=f"Show the {title} view"
            )
            for i, (tab, title) in enumerate(TABS, start=1)
        ),
    ]

    def __init__(
        self,
        feed: UpdateFeed | None = None,
        *,
        settings: Settings | None = None,
        open_feed: FeedFactory | None = None,
        context: str | None = None,
        history_depth: int = 120,
        monotonic: Callable[[], float] = time.monotonic,
        trace: Trace = NO_TRACE,
        diagnose: Diagnose | None = None,
        open_engine: EngineOpener | None = None,
        act_as: Identity | None = None,
    ) -> None:
        """feed: what to show now; without it, `open_feed(settings)` makes it.
        settings + open_feed: what `x`, `+` and `-` reopen with (absent: those keys explain why not).
        trace: where each update's frame is reported once rendered (gpuctl.trace; benchmarks).
        diagnose: what `D` runs on the settings (absent: the key explains why not).
        open_engine: how the playbook engine is opened for `a`, `R`, `L` (with settings; the default is
        `open_engine(settings, cluster=the feed's running cluster)`); act_as: whom playbooks run as
        (the policy's act_as decides; default: whom the kubeconfig authenticates as)."""
        super().__init__()
        self._trace = trace
        if feed is None:
            if settings is None or open_feed is None:
                raise TypeError("GpuctlApp needs a feed, or settings and open_feed to make one")
            feed = open_feed(settings)
        self.feed = feed
        self.settings = settings
        self.open_feed = open_feed
        self.context = context if context is not None else (context_name(settings) if settings else None)
        self.history = UtilHistory(history_depth)
        self.diagnose = diagnose
        self.index: FleetIndex | None = None
        self.filter = Filter()
        self.updates_applied = 0
        self.feed_error: str | None = None
        self.fatal_error: ConfigError | None = None
        self.reopening: str | None = None  # "connecting to prod…" until the reopened feed's first update
        self._blank = False  # the views show an empty picture while another cluster connects
        self._stale: set[str] = {tab for tab, _ in TABS}
        self._shown_tab = "heatmap"  # the tab on screen, for the indexing thread
        self._monotonic = monotonic
        self._received_at = monotonic()  # when the shown snapshot arrived, to move its clock on
        self._ticker: Timer | None = None
        self._feeds = 0
        self._feed_worker: Worker[None] | None = None
        self._open_engine = open_engine
        self._act_as = act_as
        self.desk: Desk | None = None  # the playbook engine, opened on first use
        self._quit_warned: set[str] = set()  # the runs `q` warned about: a second `q` quits while they execute
        self._indexer = Workers("gpuctl-index", 1)  # FleetIndex of each update, off the event loop

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with TabbedContent(id="tabs", initial="heatmap"):
            for i, (tab, title) in enumerate(TABS, start=1):
                with TabPane(f"{i} {title}", id=tab):
                    yield self._make_view(tab)
        yield FilterBar(id="filter")
        yield Footer()

    def _make_view(self, tab: str) -> View:
        if tab == "heatmap":
            return HeatmapView(self.history, id="heatmap-view")
        cls = {"nodes": NodesView, "pods": PodsView, "quotas": QuotasView, "alerts": AlertsView}[tab]
        return cls(id=f"{tab}-view")

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self._show_status()
        self.query_one(Heatmap).focus()
        self._start_feed(self.feed)

    # -- data ----------------------------------------------------------------------------------

    def _start_feed(self, feed: UpdateFeed) -> None:
        previous = self._feed_worker
        if previous is not None:
            previous.cancel()  # closes its cluster (the feed's context managers unwind)
        self.feed = feed
        self._feeds += 1
        self._feed_worker = self.run_worker(
            self._consume(feed, self._feeds, previous), name=f"feed-{self._feeds}", group="feed"
        )

    async def _consume(self, feed: UpdateFeed, number: int, previous: Worker[None] | None) -> None:
        if previous is not None:
            # One cluster at a time: the old one has closed its connections before the new one opens.
            with contextlib.suppress(WorkerCancelled, WorkerFailed, WorkerError):
                await previous.wait()
        error: str | None = None
        index: FleetIndex | None = None
        try:
            async for update in feed:
                received = time.perf_counter()
                index, sample = await self._indexer.run(self._index, update, index)
                if not self.is_running:  # shutting down: the views are being torn down under us
                    return
                self.apply_update(update, index, sample=sample, received=received)
        except ConfigError as exc:
            if number == 1 and self.updates_applied == 0:
                # Nothing to show and nothing will come: leave, and let the CLI print it.
                self.fatal_error = exc
                self.exit(return_code=2)
                return
            error = str(exc)
        except GpuctlError as exc:
            error = str(exc)
        except Exception as exc:  # the feed is a boundary: show its failure, keep the last picture
            error = f"{type(exc).__name__}: {exc}"
        else:
            error = "the source closed"
        finally:
            aclose = getattr(feed, "aclose", None)
            if aclose is not None:
                await aclose()
        if not self.is_running:
            return
        self.feed_error = error
        self.reopening = None
        if number > 1:  # a switch the user asked for failed: say so where they look
            self.notify(error, title=f"cannot open {self.context or 'the cluster'}", severity="error", timeout=10)
        self._show_status()

    def _index(self, update: Update, previous: FleetIndex | None) -> tuple[FleetIndex, array[int] | None]:
        """In the indexing thread: the snapshot's FleetIndex (built on the one before it, the index of
        the update before), and the history's sample of it when it is a metrics refresh (a stale
        answer only moves that work to `record`, on the loop)."""
        snapshot = update.snapshot
        sample = UtilHistory.sample_of(snapshot) if self.history.wants(snapshot) else None
        index = FleetIndex(snapshot, previous, same_gpus=update.changes.same_gpus)
        # What the view on screen reads of every node or pod: worked out here, not on the loop.
        if self._shown_tab == "nodes":
            index.sum_every_node()
        elif self._shown_tab == "pods":
            index.pods  # noqa: B018 (a cached property, read to work it out)
        return index, sample

    def apply_update(
        self,
        update: Update,
        index: FleetIndex | None = None,
        *,
        sample: array[int] | None = None,
        received: float | None = None,
    ) -> None:
        """Hand the update, indexed once (`index`, or indexed here), to whatever is on screen.

        `sample`: its utilisation sample for the history (`UtilHistory.sample_of`), if made already.
        `received`: when it came off the feed (time.perf_counter), if before this call: the trace's frame time starts there."""
        started = time.perf_counter()
        self.index = index if index is not None else FleetIndex(update.snapshot)
        self._received_at = self._monotonic()
        self._blank = False
        self.reopening = None
        if self.history.record(update.snapshot, self.index.snapshot_keys, sample):
            # A metrics refresh: its peak (parsed answers, the rows it replaced) is garbage now.
            self._indexer.submit(release_free_memory)
        self.updates_applied += 1
        self._show_status()
        active = self.query_one(TabbedContent).active
        missed = active in self._stale  # it skipped updates while hidden
        self._stale.update(tab for tab, _ in TABS)
        self._show_view(active, Changes(everything=True) if missed else update.changes)
        alerts = len(update.snapshot.alerts)
        label = f"5 Alerts ({alerts})" if alerts else "5 Alerts"
        tab = self.query_one(TabbedContent).get_tab("alerts")
        if tab.label_text != label:  # setting it redraws the tab bar, changed or not
            tab.label = label
        if isinstance(self.screen, NodeScreen):
            self.screen.show(self.index)
        if self._trace.enabled:
            received = started if received is None else received
            self.call_after_refresh(self._trace_frame, update, received, started, time.perf_counter())

    def _trace_frame(self, update: Update, received: float, started: float, applied: float) -> None:
        """The update is on screen: how long that took (from the feed; indexing; applying), and what the frame shows."""
        snapshot = update.snapshot
        self._trace.event(
            "frame",
            ms=round((time.perf_counter() - received) * 1000, 2),
            index_ms=round((started - received) * 1000, 2),
            apply_ms=round((applied - started) * 1000, 2),
            view=self.query_one(TabbedContent).active,
            gpus_changed=len(update.changes.gpus),
            everything=update.changes.everything,
            nodes=len(snapshot.nodes),
            pods=len(snapshot.pods),
            gpus=len(snapshot.gpus),
            readings=sum(1 for g in snapshot.gpus if g.util_pct is not None),
            quotas=sum(1 for n in snapshot.namespaces if n.gpu_quota_hard is not None or n.mig_quota_hard),
            metrics_stale=snapshot.metrics.stale,
        )

    def _show_view(self, tab: str, changes: Changes) -> None:
        if self.index is None:
            return
        view = self.query_one(f"#{tab}-view")
        assert isinstance(view, HeatmapView | NodesView | PodsView | QuotasView | AlertsView)
        view.show(self.index, changes, self.filter)
        self._stale.discard(tab)

    def _show_status(self) -> None:
        snapshot = self.index.snapshot if self.index and not self._blank else None
        now = snapshot.taken_at + timedelta(seconds=self._monotonic() - self._received_at) if snapshot else None
        held = (self.index.allocated, self.index.idle) if self.index and snapshot else None
        marked = self._marked()
        bars = [self.query_one("#status", StatusBar)]  # query_one is cached; query() walks every view's widgets
        if isinstance(self.screen, NodeScreen):
            bars.append(self.screen.query_one(StatusBar))
        for bar in bars:
            bar.show(
                snapshot,
                context=self.context,
                flt=self.filter,
                feed_error=self.feed_error,
                refresh_s=self.settings.refresh_s if self.settings else None,
                reopening=self.reopening,
                now=now,
                held=held,
                marked=marked,
            )
        # A countdown ("retry in 4s") needs a redraw every second; nothing else does.
        if pending_retry(snapshot) and self.feed_error is None:
            if self._ticker is None:
                self._ticker = self.set_interval(1.0, self._show_status, name="retry-countdown")
        elif self._ticker is not None:
            self._ticker.stop()
            self._ticker = None

    def _marked(self) -> int:
        """How many rows (heatmap: nodes and pools) are marked in the view on screen."""
        try:
            active = self.query_one(TabbedContent).active
            view = self.query_one(f"#{active}-view") if active else None
        except NoMatches:  # not composed yet, or being torn down (the panes go before the tabs)
            return 0
        if view is None:
            return 0
        heatmaps = view.query(Heatmap)
        return sum(len(t.marked) for t in view.query(RowTable)) + sum(len(h.marked) for h in heatmaps)

    @on(MarksChanged)
    def _marks_changed(self) -> None:
        self._show_status()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or ""
        self._shown_tab = tab
        if tab in self._stale:
            # Hidden views skipped updates: one full diff brings them up to date.
            self._show_view(tab, Changes(everything=True))
        self._focus_view(tab)
        self._show_status()  # its own marks

    def _focus_view(self, tab: str) -> None:
        if tab == "heatmap":
            self.query_one(Heatmap).focus()
            return
        tables = self.query_one(f"#{tab}-view").query(RowTable)
        target = tables.last() if tab == "nodes" else tables.first()
        target.focus()

    # -- actions -------------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        if isinstance(self.screen, NodeScreen):
            self.pop_screen()
        self.query_one(TabbedContent).active = tab

    # -- reopening the feed: another context, another refresh interval -----------------------------

    def _can_reopen(self) -> bool:
        if self.settings is None or self.open_feed is None:
            self.notify("This feed was handed in ready-made; there is nothing to reconnect.", timeout=6)
            return False
        return True

    async def action_switch_context(self) -> None:
        if not self._can_reopen() or isinstance(self.screen, ContextScreen | HelpScreen):
            return
        assert self.settings is not None
        if self.settings.mode != "kubernetes":
            self.notify(
                f"--{self.settings.mode} reads no kubeconfig, so there is no context to switch to.",
                title="no contexts",
                timeout=6,
            )
            return
        if self.settings.in_cluster:
            self.notify("--in-cluster uses the pod's service account, not a kubeconfig.", title="no contexts")
            return
        try:
            from gpuctl.service import kube_contexts  # lazily, like the feed: the app imports no cluster code

            contexts = await asyncio.to_thread(kube_contexts, self.settings.kubeconfig)
        except ConfigError as exc:
            self.notify(str(exc), title="no contexts", severity="warning", timeout=8)
            return
        if not contexts.names:
            self.notify(f"{contexts.paths} lists no contexts.", title="no contexts", severity="warning")
            return
        current = self.settings.context or contexts.current
        self.push_screen(ContextScreen(contexts.names, current, source=contexts.paths), self._context_chosen)

    def _context_chosen(self, name: str | None) -> None:
        if name is None or self.settings is None:
            return
        if name == (self.settings.context or self.context):
            self.notify(f"Already on {name}.", timeout=3)
            return
        self._reopen(self.settings.model_copy(update={"context": name}), note=f"connecting to {name}…", fresh=True)

    def action_refresh_interval(self, direction: int) -> None:
        if not self._can_reopen():
            return
        assert self.settings is not None
        current = self.settings.refresh_s
        new = step_interval(current, direction)
        if new is None:
            edge = "longest" if direction > 0 else "shortest"
            self.notify(f"{interval(current)} is the {edge} refresh interval.", timeout=3)
            return
        self._reopen(self.settings.model_copy(update={"refresh_s": new}), note="reconnecting…", fresh=False)

    def _reopen(self, settings: Settings, *, note: str, fresh: bool) -> None:
        """Close the current feed and open one for `settings`.

        fresh: another cluster, so nothing on screen applies: the views empty out
        until it answers. Otherwise (a new interval) the picture stays meanwhile.
        """
        assert self.open_feed is not None
        self._close_desk()  # its engine talks to the old cluster
        self.settings = settings
        self.context = context_name(settings)
        self.feed_error = None
        self.reopening = note
        if fresh:
            self.history.clear()
            if isinstance(self.screen, NodeScreen):
                self.pop_screen()
            self._show_blank(settings)
        self._start_feed(self.open_feed(settings))
        self._show_status()

    def _show_blank(self, settings: Settings) -> None:
        """Empty views while another cluster connects (they say so)."""
        blank = Snapshot(
            taken_at=self.index.snapshot.taken_at if self.index else datetime.now(UTC),
            idle_threshold_pct=settings.idle_threshold_pct,
            idle_window_s=settings.idle_window_s,
            metrics=MetricsHealth(source="none"),
            watch=WatchHealth(source="none", context=settings.context),
        )
        self.index = FleetIndex(blank)
        self._blank = True
        self._stale.update(tab for tab, _ in TABS)
        self._show_view(self.query_one(TabbedContent).active, Changes(everything=True))

    def action_doctor(self) -> None:
        if self.diagnose is None or self.settings is None:
            self.notify("The doctor needs a cluster to check (gpuctl top started without settings).", timeout=5)
            return
        if not isinstance(self.screen, DoctorScreen):
            self.push_screen(DoctorScreen(self.diagnose, self.settings))

    # -- playbooks: every action through the engine (gpuctl.tui.playbooks) ------------------------

    def _desk(self) -> Desk | None:
        from gpuctl.tui.playbooks.desk import Desk, open_engine_for

        if self.settings is None:
            self.notify("This feed was handed in ready-made: there are no settings to open the playbook engine with.",
                        title="no playbooks", timeout=6)  # fmt: skip
            return None
        if self.desk is None:
            self.desk = Desk(self.settings, cluster=lambda: running_cluster(self.feed),
                             opener=self._open_engine or open_engine_for, act_as=self._act_as)  # fmt: skip
        return self.desk

    def _close_desk(self) -> None:
        if self.desk is not None:
            self.run_worker(self.desk.aclose(), name="engine-close", group="engine-close")
            self.desk = None

    async def on_unmount(self) -> None:
        self._indexer.close()
        if self.desk is not None:  # runs still executing are left to the process's end (see action_quit)
            await self.desk.aclose(wait=False)

    async def action_quit(self) -> None:
        """Quit; while this process executes a run, only on a second `q` (the run is then interrupted)."""
        running = self.desk.running() if self.desk is not None else []
        if running and set(running) != self._quit_warned:
            self._quit_warned = set(running)
            self.notify(f"Executing {', '.join(running)}. q again quits anyway: the run stops where it is and is "
                        "recorded as interrupted when gpuctl next opens the engine.",
                        title="a run is executing", severity="warning", timeout=10)  # fmt: skip
            return
        self.exit()

    def action_act(self) -> None:
        from gpuctl.tui.playbooks.flow import act_on, selection_of
        from gpuctl.tui.playbooks.offers import Selection

        if self.index is None or (desk := self._desk()) is None:
            return
        if isinstance(self.screen, NodeScreen):  # the node on screen
            selection = Selection(nodes=tuple(n for n in (self.index.nodes.get(self.screen.node),) if n is not None))
        elif self.screen is self.screen_stack[0]:
            selection = selection_of(self.query_one(f"#{self.query_one(TabbedContent).active}-view"), self.index)
        else:
            return  # a playbook screen is open: finish there first
        if not selection:
            self.notify("Nothing selected: move to a row (or mark some with space) first.", timeout=4)
            return
        self.run_worker(act_on(self, desk, selection), name="act", group="act")

    def action_runs(self) -> None:
        from gpuctl.tui.playbooks.runs_screen import RunsScreen

        if not isinstance(self.screen, RunsScreen) and (desk := self._desk()) is not None:
            self.push_screen(RunsScreen(desk))

    def action_audit(self) -> None:
        from gpuctl.tui.playbooks.audit_screen import AuditScreen

        if not isinstance(self.screen, AuditScreen) and (desk := self._desk()) is not None:
            self.push_screen(AuditScreen(desk))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(help_sections()))

    def action_filter(self) -> None:
        bar = self.query_one(FilterBar)
        bar.add_class("open")
        bar.focus()

    @on(FilterBar.FilterChanged)
    def _filter_changed(self, event: FilterBar.FilterChanged) -> None:
        self._set_filter(event.text)
        if event.done:
            bar = self.query_one(FilterBar)
            bar.remove_class("open")
            self._focus_view(self.query_one(TabbedContent).active)

    def _set_filter(self, text: str) -> None:
        new = Filter.parse(text)
        if new != self.filter:
            self.filter = new
            self._stale.update(tab for tab, _ in TABS)
            self._show_view(self.query_one(TabbedContent).active, Changes(everything=True))
            self._show_status()

    def _drill(self, node: str) -> None:
        screen = NodeScreen(node)
        self.push_screen(screen)
        if self.index is not None:
            self.call_after_refresh(self._fill_node_screen, screen)

    def _fill_node_screen(self, screen: NodeScreen) -> None:
        if self.index is not None and screen.is_attached:
            screen.show(self.index)
            self._show_status()

    @on(NodeChosen)
    def _node_chosen(self, event: NodeChosen) -> None:
        self._drill(event.node)

    @on(QuotasView.NamespaceChosen)
    def _namespace_chosen(self, event: QuotasView.NamespaceChosen) -> None:
        bar = self.query_one(FilterBar)
        bar.value = f"ns:{event.namespace_name}"
        self._set_filter(bar.value)
        self.query_one(TabbedContent).active = "pods"


def help_sections() -> list[tuple[str, list[BindingType]]]:
    from gpuctl.tui.heatmap_view import HeatmapView
    from gpuctl.tui.playbooks.audit_screen import AuditScreen
    from gpuctl.tui.playbooks.plan_screen import PlanScreen
    from gpuctl.tui.playbooks.progress_screen import ProgressScreen
    from gpuctl.tui.playbooks.runs_screen import RunsScreen

    return [
        ("Everywhere", list(GpuctlApp.BINDINGS)),
        ("Heatmap", [*HeatmapView.BINDINGS, *Heatmap.BINDINGS]),
        ("Tables (nodes, pods, quotas, alerts)", list(RowTable.BINDINGS)),
        ("Filter bar", [Binding("enter", "", "Keep the filter and go back"), *FilterBar.BINDINGS]),
        ("Context list (x)", [Binding("enter", "", "Connect to the highlighted context"), *ContextScreen.BINDINGS]),
        ("Node screen", list(NodeScreen.BINDINGS)),
        ("Plan screen (a, then enter on a playbook)", list(PlanScreen.BINDINGS)),
        ("Run progress", list(ProgressScreen.BINDINGS)),
        ("Runs (R)", [Binding("enter", "", "Open the run"), *RunsScreen.BINDINGS]),
        ("Audit log (L)", [Binding("enter", "", "Open the record's run"), *AuditScreen.BINDINGS]),
    ]
