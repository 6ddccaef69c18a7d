"""Failures of the engine's calls as toasts: a worker that raised would take the whole app down.

The engine is a boundary: its errors (GpuctlError: a refusal, an unreachable API
server) and anything unexpected below it are shown where the user looks and the
screen stays usable; cancellation (leaving a screen) passes through untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from textual.widget import Widget

from gpuctl.errors import GpuctlError


def describe(error: Exception) -> str:
    """What a person reads: a gpuctl error's own text (its message and hint), else the exception's type and text."""
    return str(error) if isinstance(error, GpuctlError) else f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def reported(node: Widget, title: str) -> Iterator[None]:
    """Run the block; an exception from it becomes an error toast titled `title`."""
    try:
        yield
    except Exception as e:  # the engine is a boundary: say what failed, keep the UI
        node.notify(describe(e), title=title, severity="error", timeout=10)
