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

    An error that leaves nothing to show (a ConfigError before the first
    snapshot) is re-raised after the terminal is restored, so the CLI prints it.
    """
    from gpuctl.doctor.run import examine
    from gpuctl.tui.app import GpuctlApp
    from gpuctl.tui.service_feed import cluster_feed, logs_as_toasts

    app = GpuctlApp(settings=settings, open_feed=cluster_feed, diagnose=examine)
    with logs_as_toasts(app):
        app.run()
    if app.fatal_error is not None:
        raise app.fatal_error
    return app.return_code or 0
