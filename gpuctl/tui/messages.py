"""Messages several views post; each view's own messages stay nested in it."""

from __future__ import annotations

from textual.message import Message


class NodeChosen(Message):
    """The user picked a node (a GPU cell, a node row, a pod's or an alert's node): open it."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node


class MarksChanged(Message):
    """The user marked or unmarked rows or heatmap cells: the status bar's "N marked" follows."""
