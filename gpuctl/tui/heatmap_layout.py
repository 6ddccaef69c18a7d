"""Where every heatmap cell goes: pure geometry, no Textual, no colours.

The heatmap is a list of lines. A pool header line is one target (toggling it
collapses the pool); a cell line holds GPU cells at fixed x positions. Normal
mode gives each node a labelled line (wrapping when a MIG-partitioned node has
more cells than fit); dense mode drops the labels and packs as many nodes per
line as fit. The layout is rebuilt only when the set of visible GPUs, the width
or a mode changes; metric updates just repaint the lines that hold them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gpuctl.model import Gpu

POOL_PREFIX = "pool:"
NORMAL_CELL = 2
DENSE_CELL = 1
MAX_LABEL = 28


@dataclass(frozen=True, slots=True)
class Cell:
    key: str  # GPU key
    x: int
    width: int


@dataclass(slots=True)
class Line:
    pool: str
    header: bool = False
    label: str = ""  # node name on the first line of a node in normal mode
    cells: list[Cell] = field(default_factory=list)

    def target_at(self, x: int) -> str | None:
        if self.header:
            return POOL_PREFIX + self.pool
        for c in self.cells:
            if c.x <= x < c.x + c.width:
                return c.key
        return None

    def targets(self) -> list[tuple[str, int]]:
        """(target id, x centre) pairs left to right."""
        if self.header:
            return [(POOL_PREFIX + self.pool, 0)]
        return [(c.key, c.x) for c in self.cells]


@dataclass(slots=True)
class Layout:
    lines: list[Line]
    width: int
    label_width: int
    line_of: dict[str, int]  # target id -> line index

    def first_target(self) -> str | None:
        """The first GPU cell; the first pool header when every pool is folded."""
        for line in self.lines:
            if line.cells:
                return line.cells[0].key
        return self.lines[0].targets()[0][0] if self.lines else None

    def position(self, target: str) -> tuple[int, int] | None:
        y = self.line_of.get(target)
        if y is None:
            return None
        for t, x in self.lines[y].targets():
            if t == target:
                return (x, y)
        return None

    def move(self, target: str | None, dx: int, dy: int) -> str | None:
        """The target reached from `target` by one step; the same one at an edge."""
        pos = self.position(target) if target else None
        if pos is None:
            return self.first_target()
        x, y = pos
        if dx:
            row = self.lines[y].targets()
            i = next(i for i, (t, _) in enumerate(row) if t == target)
            j = i + dx
            if 0 <= j < len(row):
                return row[j][0]
            # Walk onto the neighbouring line, like reading text.
            ny = y + (1 if dx > 0 else -1)
            while 0 <= ny < len(self.lines):
                nrow = self.lines[ny].targets()
                if nrow:
                    return nrow[0][0] if dx > 0 else nrow[-1][0]
                ny += 1 if dx > 0 else -1
            return target
        ny = y + dy
        while 0 <= ny < len(self.lines):
            nrow = self.lines[ny].targets()
            if nrow:
                return min(nrow, key=lambda tx: abs(tx[1] - x))[0]
            ny += dy
        return target


def _phys(g: Gpu) -> int:
    return g.index


def build_layout(
    nodes_by_pool: Mapping[str, Sequence[str]],
    gpus_by_node: Mapping[str, Sequence[Gpu]],
    *,
    width: int,
    dense: bool,
    collapsed: frozenset[str] = frozenset(),
) -> Layout:
    lines: list[Line] = []
    width = max(width, 12)
    names = [n for ns in nodes_by_pool.values() for n in ns if n in gpus_by_node]
    label_width = 0
    if not dense and names:
        label_width = min(max(len(n) for n in names), MAX_LABEL, max(8, width // 3))
    for pool, node_names in nodes_by_pool.items():
        shown = [n for n in node_names if n in gpus_by_node]
        if not shown:
            continue
        lines.append(Line(pool=pool, header=True))
        if pool in collapsed:
            continue
        if dense:
            _pack_dense(lines, pool, shown, gpus_by_node, width)
        else:
            for name in shown:
                _place_node(lines, pool, name, gpus_by_node[name], label_width, width)
    line_of: dict[str, int] = {}
    for y, line in enumerate(lines):
        for t, _ in line.targets():
            line_of[t] = y
    return Layout(lines=lines, width=width, label_width=label_width, line_of=line_of)


def _node_cells(gpus: Sequence[Gpu], x0: int, cell: int, gap_between_gpus: int) -> list[Cell]:
    cells: list[Cell] = []
    x = x0
    prev: int | None = None
    for g in gpus:
        if prev is not None and _phys(g) != prev:
            x += gap_between_gpus
        cells.append(Cell(key=g.key, x=x, width=cell))
        x += cell
        prev = _phys(g)
    return cells


def _place_node(lines: list[Line], pool: str, name: str, gpus: Sequence[Gpu], label_width: int, width: int) -> None:
    x0 = label_width + 1
    room = max(NORMAL_CELL, width - x0)
    line = Line(pool=pool, label=name)
    x = x0
    prev: int | None = None
    for g in gpus:
        gap = 1 if prev is not None and _phys(g) != prev else 0
        if x + gap + NORMAL_CELL > x0 + room and line.cells:
            lines.append(line)
            line = Line(pool=pool)
            x, gap = x0, 0
        x += gap
        line.cells.append(Cell(key=g.key, x=x, width=NORMAL_CELL))
        x += NORMAL_CELL
        prev = _phys(g)
    lines.append(line)


def _pack_dense(
    lines: list[Line], pool: str, names: Sequence[str], gpus_by_node: Mapping[str, Sequence[Gpu]], width: int
) -> None:
    line = Line(pool=pool)
    x = 0
    for name in names:
        gpus = gpus_by_node[name]
        span = len(gpus) * DENSE_CELL
        if line.cells and x + span > width:
            lines.append(line)
            line, x = Line(pool=pool), 0
        if span > width:  # a node wider than the screen wraps on its own
            for g in gpus:
                if x + DENSE_CELL > width:
                    lines.append(line)
                    line, x = Line(pool=pool), 0
                line.cells.append(Cell(key=g.key, x=x, width=DENSE_CELL))
                x += DENSE_CELL
        else:
            line.cells.extend(_node_cells(gpus, x, DENSE_CELL, 0))
            x += span
        x += 1  # one blank column between nodes
    if line.cells:
        lines.append(line)
