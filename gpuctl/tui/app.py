"""`gpuctl top`: the live terminal UI.

The app consumes an `UpdateFeed` in one worker and never does I/O itself.
Each update is indexed once (`FleetIndex`) and handed to the visible view
only; hidden views are marked stale and catch up with a full diff when shown,
so a 10,000-pod table costs nothing while you look at the heatmap.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, TabbedContent, TabPane

from gpuctl.errors import ConfigError, GpuctlError
from gpuctl.model import Changes, Update
from gpuctl.tui.alerts_view import AlertsView
from gpuctl.tui.feed import UpdateFeed
from gpuctl.tui.filter_bar import FilterBar
from gpuctl.tui.filtering import Filter
from gpuctl.tui.fleet_index import FleetIndex
from gpuctl.tui.heatmap import Heatmap
from gpuctl.tui.heatmap_view import HeatmapView
from gpuctl.tui.help_screen import HelpScreen
from gpuctl.tui.history import UtilHistory
from gpuctl.tui.node_screen import NodeScreen
from gpuctl.tui.nodes_view import NodesView
from gpuctl.tui.pods_view import PodsView
from gpuctl.tui.quotas_view import QuotasView
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.status_bar import StatusBar

TABS: tuple[tuple[str, str], ...] = (
    ("heatmap", "Heatmap"),
    ("nodes", "Nodes"),
    ("pods", "Pods"),
    ("quotas", "Quotas"),
    ("alerts", "Alerts"),
)
View = HeatmapView | NodesView | PodsView | QuotasView | AlertsView


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
        *(
            Binding(
                str(i), f"show_tab('{tab}')", title, show=False, id=f"app.tab.{tab}", tooltip=f"Show the {title} view"
            )
            for i, (tab, title) in enumerate(TABS, start=1)
        ),
    ]

    def __init__(self, feed: UpdateFeed, *, context: str | None = None, history_depth: int = 120) -> None:
        super().__init__()
        self.feed = feed
        self.context = context
        self.history = UtilHistory(history_depth)
        self.index: FleetIndex | None = None
        self.filter = Filter()
        self.updates_applied = 0
        self.feed_error: str | None = None
        self.fatal_error: ConfigError | None = None
        self._stale: set[str] = {tab for tab, _ in TABS}

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
        self.consume_feed()

    # -- data ----------------------------------------------------------------------------------

    @work(exclusive=True, group="feed")
    async def consume_feed(self) -> None:
        try:
            async for update in self.feed:
                self.apply_update(update)
        except ConfigError as exc:
            if self.updates_applied == 0:
                # Nothing to show and nothing will come: leave, and let the CLI print it.
                self.fatal_error = exc
                self.exit(return_code=2)
                return
            self.feed_error = str(exc)
        except GpuctlError as exc:
            self.feed_error = str(exc)
        except Exception as exc:  # the feed is a boundary: show its failure, keep the last picture
            self.feed_error = f"{type(exc).__name__}: {exc}"
        else:
            self.feed_error = "the source closed"
        self._show_status()

    def apply_update(self, update: Update) -> None:
        """Index the snapshot once and hand it to whatever is on screen."""
        self.index = FleetIndex(update.snapshot)
        self.history.record(update.snapshot)
        self.updates_applied += 1
        self._show_status()
        active = self.query_one(TabbedContent).active
        missed = active in self._stale  # it skipped updates while hidden
        self._stale.update(tab for tab, _ in TABS)
        self._show_view(active, Changes(everything=True) if missed else update.changes)
        alerts = len(update.snapshot.alerts)
        self.query_one(TabbedContent).get_tab("alerts").label = f"5 Alerts ({alerts})" if alerts else "5 Alerts"
        if isinstance(self.screen, NodeScreen):
            self.screen.show(self.index)

    def _show_view(self, tab: str, changes: Changes) -> None:
        if self.index is None:
            return
        view = self.query_one(f"#{tab}-view")
        assert isinstance(view, HeatmapView | NodesView | PodsView | QuotasView | AlertsView)
        view.show(self.index, changes, self.filter)
        self._stale.discard(tab)

    def _show_status(self) -> None:
        snapshot = self.index.snapshot if self.index else None
        for bar in self.query(StatusBar):
            bar.show(snapshot, context=self.context, flt=self.filter, feed_error=self.feed_error)
        if isinstance(self.screen, NodeScreen):
            bar = self.screen.query_one(StatusBar)
            bar.show(snapshot, context=self.context, flt=self.filter, feed_error=self.feed_error)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or ""
        if tab in self._stale:
            # Hidden views skipped updates: one full diff brings them up to date.
            self._show_view(tab, Changes(everything=True))
        self._focus_view(tab)

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

    @on(Heatmap.NodeChosen)
    @on(NodesView.NodeChosen)
    @on(PodsView.NodeChosen)
    @on(AlertsView.NodeChosen)
    def _node_chosen(
        self, event: Heatmap.NodeChosen | NodesView.NodeChosen | PodsView.NodeChosen | AlertsView.NodeChosen
    ) -> None:
        self._drill(event.node)

    @on(QuotasView.NamespaceChosen)
    def _namespace_chosen(self, event: QuotasView.NamespaceChosen) -> None:
        bar = self.query_one(FilterBar)
        bar.value = f"ns:{event.namespace}"
        self._set_filter(bar.value)
        self.query_one(TabbedContent).active = "pods"


def help_sections() -> list[tuple[str, list[BindingType]]]:
    from gpuctl.tui.heatmap_view import HeatmapView

    return [
        ("Everywhere", list(GpuctlApp.BINDINGS)),
        ("Heatmap", [*HeatmapView.BINDINGS, *Heatmap.BINDINGS]),
        ("Tables (nodes, pods, quotas, alerts)", list(RowTable.BINDINGS)),
        ("Filter bar", [Binding("enter", "", "Keep the filter and go back"), *FilterBar.BINDINGS]),
        ("Node screen", list(NodeScreen.BINDINGS)),
    ]
