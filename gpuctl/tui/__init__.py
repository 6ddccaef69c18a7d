"""`gpuctl top`, the live terminal UI.

`run(settings)` wires the app to the cluster service; `GpuctlApp` takes any
async iterable of `Update` so tests and benchmarks can drive it directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpuctl.config import Settings

__all__ = ["run"]


def run(settings: Settings) -> int:
    """Build the app on the cluster feed and run it until the user quits; returns the exit code.

    The feed starts first (connecting, the first lists and queries) and Textual is
    imported in a thread meanwhile, so the cluster answers while the UI starts.
    An error that leaves nothing to show (a ConfigError before the first
    snapshot) is re-raised after the terminal is restored, so the CLI prints it.
    """
    import asyncio

    return asyncio.run(_run(settings))


async def _run(settings: Settings) -> int:
    import asyncio
    import importlib

    from gpuctl.trace import Trace
    from gpuctl.tui.feed import StartedFeed
    from gpuctl.tui.service_feed import cluster_feed, logs_as_toasts

    trace = Trace.open(settings.trace_file)
    try:
        feed = StartedFeed(cluster_feed(settings))
        app_module, doctor = await asyncio.to_thread(
            lambda: (importlib.import_module("gpuctl.tui.app"), importlib.import_module("gpuctl.doctor.run"))
        )
        app = app_module.GpuctlApp(feed, settings=settings, open_feed=cluster_feed, trace=trace, diagnose=doctor.examine)
        try:
            with logs_as_toasts(app):
                await app.run_async()
        finally:
            await feed.aclose()  # if the app never took it in
        if app.fatal_error is not None:
            raise app.fatal_error
        return int(app.return_code or 0)
    finally:
        trace.close()
