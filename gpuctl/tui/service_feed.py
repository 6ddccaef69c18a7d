"""The live feed behind `gpuctl top`: the cluster service's hub subscription.

The generator is created before the app starts but runs inside the app's
event loop (its body starts at the first `__anext__`), so the sources, the hub
and the UI share one loop and the app never blocks on I/O. Leaving the app
cancels the consuming worker, which closes the generator and with it the
sources.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from gpuctl.config import Settings
from gpuctl.model import Update

if TYPE_CHECKING:  # Textual is imported while the feed starts (gpuctl.tui.run), not before it
    from textual.app import App
    from textual.notifications import SeverityLevel

    from gpuctl.service import Cluster


class ClusterFeed:
    """The hub subscription of a cluster opened for `settings`, and that running cluster while it
    runs (`cluster`): the playbook engine plans from the same live picture the app shows."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cluster: Cluster | None = None

    async def __aiter__(self) -> AsyncIterator[Update]:
        from gpuctl.service import open_cluster

        # The picture first, idle streaks when the history answers: a live view need not wait for them.
        async with open_cluster(self.settings, history_first=False) as cluster, cluster.subscribe() as updates:
            self.cluster = cluster
            try:
                async for update in updates:
                    yield update
            finally:
                self.cluster = None


def cluster_feed(settings: Settings) -> ClusterFeed:
    return ClusterFeed(settings)


def context_name(settings: Settings) -> str | None:
    """What the status bar calls the cluster; None lets the snapshot's watch context decide."""
    if settings.mode == "demo":
        return "demo"
    if settings.mode == "local":
        return "local"
    return settings.context


class ToastHandler(logging.Handler):
    """Log records become toasts: a source's warning must not scribble over the screen."""

    def __init__(self, app: App[object]) -> None:
        super().__init__(level=logging.WARNING)
        self.app = app
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not break the UI
            message = str(record.msg)
        severity: SeverityLevel = "error" if record.levelno >= logging.ERROR else "warning"
        if threading.get_ident() == self._thread:
            self.app.notify(message, title=record.name, severity=severity, timeout=8)
        else:
            self.app.call_from_thread(self.app.notify, message, title=record.name, severity=severity, timeout=8)


@contextmanager
def logs_as_toasts(app: App[Any]) -> Iterator[None]:
    """Swap the root logger's terminal handlers for toasts while the app owns the terminal."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [ToastHandler(app)]
    try:
        yield
    finally:
        root.handlers = saved
