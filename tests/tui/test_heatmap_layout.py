from gpuctl.model import Gpu
from gpuctl.tui.heatmap_layout import POOL_PREFIX, build_layout


def gpus(node: str, pool: str, n: int, mig: int = 0) -> list[Gpu]:
    out: list[Gpu] = []
    for i in range(n):
        if mig:
            out += [Gpu(node=node, pool=pool, index=i, mig_instance=j, mig_profile="1g.10gb") for j in range(mig)]
        else:
            out.append(Gpu(node=node, pool=pool, index=i))
    return out


POOLS = {"a": ["a-1", "a-2"], "b": ["b-1"]}
BY_NODE = {"a-1": gpus("a-1", "a", 8), "a-2": gpus("a-2", "a", 8), "b-1": gpus("b-1", "b", 4, mig=7)}


def test_normal_mode_has_a_header_per_pool_and_a_labelled_line_per_node() -> None:
    lay = build_layout(POOLS, BY_NODE, width=120, dense=False)
    assert [(l.header, l.label) for l in lay.lines] == [(True, ""), (False, "a-1"), (False, "a-2"), (True, ""), (False, "b-1")]
    row = lay.lines[1].cells
    assert len(row) == 8
    assert row[0].x == lay.label_width + 1
    assert row[1].x == row[0].x + 3  # two-wide cells, one blank between physical GPUs
    mig = lay.lines[4].cells
    assert mig[1].x == mig[0].x + 2  # MIG instances of one GPU sit side by side


def test_wide_mig_nodes_wrap_onto_unlabelled_lines() -> None:
    lay = build_layout(POOLS, BY_NODE, width=40, dense=False)
    b_lines = [l for l in lay.lines if l.pool == "b" and not l.header]
    assert len(b_lines) > 1
    assert b_lines[0].label == "b-1" and all(l.label == "" for l in b_lines[1:])
    assert sum(len(l.cells) for l in b_lines) == 28
    assert all(c.x + c.width <= 40 for l in b_lines for c in l.cells)


def test_dense_mode_packs_nodes_side_by_side() -> None:
    lay = build_layout(POOLS, BY_NODE, width=80, dense=True)
    a_lines = [l for l in lay.lines if l.pool == "a" and not l.header]
    assert len(a_lines) == 1 and len(a_lines[0].cells) == 16
    assert a_lines[0].cells[8].x == 9  # one blank column between nodes
    assert lay.label_width == 0


def test_collapsed_pool_keeps_only_its_header() -> None:
    lay = build_layout(POOLS, BY_NODE, width=120, dense=False, collapsed=frozenset({"a"}))
    assert [l.header for l in lay.lines if l.pool == "a"] == [True]
    assert "a-1/0" not in lay.line_of
    assert lay.line_of[POOL_PREFIX + "a"] == 0


def test_moves_read_like_text_and_columns() -> None:
    lay = build_layout(POOLS, BY_NODE, width=120, dense=False)
    assert lay.first_target() == "a-1/0"
    assert lay.move("a-1/0", 1, 0) == "a-1/1"
    assert lay.move("a-1/7", 1, 0) == "a-2/0"  # past the end of a line: the next line
    assert lay.move("a-1/0", -1, 0) == POOL_PREFIX + "a"
    assert lay.move("a-1/3", 0, 1) == "a-2/3"
    assert lay.move("a-2/3", 0, 1) == POOL_PREFIX + "b"
    assert lay.move(POOL_PREFIX + "a", 0, -1) == POOL_PREFIX + "a"  # top edge stays
    assert lay.move("gone/0", 0, 1) == "a-1/0"


def test_hit_testing_maps_columns_to_cells() -> None:
    lay = build_layout(POOLS, BY_NODE, width=120, dense=False)
    line = lay.lines[1]
    first = line.cells[0]
    assert line.target_at(first.x) == "a-1/0"
    assert line.target_at(first.x + 2) is None  # the gap
    assert line.target_at(0) is None  # the label
    assert lay.lines[0].target_at(50) == POOL_PREFIX + "a"


def test_nodes_without_visible_gpus_and_empty_pools_are_skipped() -> None:
    lay = build_layout(POOLS, {"a-1": BY_NODE["a-1"]}, width=120, dense=False)
    assert [l.pool for l in lay.lines] == ["a", "a"]
