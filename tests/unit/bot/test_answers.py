"""Answers to the read-only commands, from the seeded demo fleet run through the real store."""

from __future__ import annotations

import json

import pytest

from gpuctl.bot import commands as c
from gpuctl.bot.answers import ROWS, answer, help_reply, problem_reply
from gpuctl.bot.blocks import MAX_BLOCKS, SECTION_LIMIT, Reply, esc
from gpuctl.model import Snapshot
from gpuctl.query.fleet import FleetIndex, idle_holders, totals
from gpuctl.query.states import pod_state
from gpuctl.render.summary import duration
from testbed.slack import blocks_text
from tests.tui.demo_fleet import demo_snapshots


@pytest.fixture(scope="module")
async def snap() -> Snapshot:
    return (await demo_snapshots(ticks=2))[-1]


@pytest.fixture(scope="module")
async def big() -> Snapshot:
    return (await demo_snapshots(scale=10, ticks=2))[-1]


def ask(text: str, snap: Snapshot) -> tuple[Reply, str]:
    parsed = c.parse(text)
    assert not isinstance(parsed, c.Problem), parsed
    reply = answer(parsed, snap, FleetIndex(snap))
    return reply, blocks_text(reply.message())


def within_slack_limits(reply: Reply) -> None:
    message = reply.message()
    assert len(message["blocks"]) <= MAX_BLOCKS
    for block in message["blocks"]:
        texts = [block["text"]["text"]] if "text" in block else [e["text"] for e in block.get("elements", []) + block.get("fields", [])]
        assert all(len(t) <= SECTION_LIMIT for t in texts), block
    json.dumps(message)  # what goes over the wire


def test_status_counts_come_from_the_shared_totals(snap: Snapshot) -> None:
    reply, text = ask("status", snap)
    t = totals(snap)
    assert f"{t.gpus} allocatable · {t.allocated} allocated · {t.free} free" in text
    assert f"{t.busy} busy · {t.idle} idle · {t.quiet} quiet" in text
    for pool in snap.pools:
        assert pool.name in text
    assert "Alerts firing*\nnone" in text
    assert "cluster: context demo, connected" in text and "data at " in text  # freshness on every answer
    assert reply.text.startswith(f"GPUs: {t.busy} busy, {t.idle} idle")


def test_status_says_loudly_when_a_source_stopped(snap: Snapshot) -> None:
    from gpuctl.model import SourceFailure

    broken = snap.model_copy(update={"failures": (SourceFailure(source="prometheus", error="KeyError: 'x'", since=snap.taken_at),)})
    reply, text = ask("status", broken)
    warning = reply.blocks[1]["text"]["text"]
    assert warning.startswith(":warning:") and "prometheus stopped" in warning and "KeyError" in warning
    assert "STOPPED: prometheus" in text


def test_idle_lists_the_shared_idle_holders_in_order(snap: Snapshot) -> None:
    holders = idle_holders(snap)
    assert holders, "the demo fleet has idle pods"
    reply, text = ask("idle", snap)
    positions = [text.index(p.key) for p in holders]
    assert positions == sorted(positions)
    assert duration(holders[0].idle_for_s) in text
    assert f"{len(holders)} pods" in reply.text


def test_idle_filter_narrows(snap: Snapshot) -> None:
    namespace = idle_holders(snap)[0].namespace
    _, text = ask(f"idle ns:{namespace}", snap)
    assert all(p.key in text for p in idle_holders(snap) if p.namespace == namespace)
    assert not any(p.key in text for p in idle_holders(snap) if namespace not in p.namespace)
    _, none = ask("idle ns:no-such-namespace", snap)
    assert "No pod holds an idle GPU matching `ns:no-such-namespace`" in none


def test_a_long_list_is_cut_with_a_count_and_the_filter_that_narrows_it(big: Snapshot) -> None:
    holders = idle_holders(big)
    assert len(holders) > ROWS
    reply, text = ask("idle", big)
    assert f"showing {ROWS} of {len(holders)} idle pods" in text
    assert "`/gpu idle ns:NAMESPACE`" in text
    assert holders[ROWS].key not in text
    within_slack_limits(reply)


def test_quota_table_and_one_namespace(snap: Snapshot) -> None:
    _, text = ask("quota", snap)
    with_quota = [n for n in snap.namespaces if n.gpu_quota_hard is not None]
    assert with_quota and all(n.name in text for n in with_quota)
    n = with_quota[0]
    _reply, one = ask(f"quota {n.name}", snap)
    assert f"*GPU quota*\n{n.gpu_quota_used:g} of {n.gpu_quota_hard:g} used" in one
    assert f"*Held GPUs*\n{n.gpus_busy} busy · {n.gpus_idle} idle" in one
    _, none = ask("quota zzz", snap)
    assert "No namespace matching 'zzz' has a GPU quota" in none


def test_pools(snap: Snapshot) -> None:
    _, text = ask("pools", snap)
    for p in snap.pools:
        assert p.name in text and f"{p.nodes_ready}/{p.nodes}" in text


def test_node_shows_its_gpus_and_pods(snap: Snapshot) -> None:
    index = FleetIndex(snap)
    name = next(n for n, pods in index.pods_by_node.items() if pods)
    reply, text = ask(f"node {name}", snap)
    assert f"Node {name}" in text
    for pod in index.pods_by_node[name]:
        assert pod.key in text
    (gpu_table,) = [b["text"]["text"] for b in reply.blocks if b.get("text", {}).get("text", "").startswith("```gpu")]
    assert len(gpu_table.strip("`").splitlines()) == 1 + len(index.gpus_by_node[name])


def test_unknown_node_suggests_close_names(snap: Snapshot) -> None:
    name = snap.nodes[0].name
    _, text = ask(f"node {name[:-1]}x", snap)
    assert "gpuctl sees no GPU node" in text and f"Did you mean `{name}`" in text


def test_pod_shows_state_owners_and_budgets(snap: Snapshot) -> None:
    pod = next(p for p in snap.pods if p.owners and p.node)
    _, text = ask(f"pod {pod.key}", snap)
    assert " → ".join(f"{o.kind}/{o.name}" for o in pod.owners) in text
    state = pod_state(pod, snap.idle_threshold_pct)
    assert (state.value in text) or (pod.phase in text)
    for key in pod.gpu_keys:
        assert key in text
    _, missing = ask(f"pod {pod.namespace}/{pod.name}x", snap)
    assert "gpuctl sees no pod" in missing and f"Did you mean `{pod.name}`" in missing


def test_top_shows_busiest_then_idlest_as_bars(snap: Snapshot) -> None:
    _reply, text = ask("top 3", snap)
    measured = sorted((g for g in snap.gpus if g.pod and g.util_pct is not None), key=lambda g: -(g.util_pct or 0))
    busiest, idlest = text.split("*Idlest*")
    assert measured[0].key in busiest and "█" in busiest
    assert measured[-1].key in idlest
    assert sum(1 for line in busiest.splitlines() if "% " in line) == 3
    for pool in {g.pool for g in measured}:
        assert pool in text


def test_every_answer_fits_slack_on_a_big_fleet(big: Snapshot) -> None:
    index = FleetIndex(big)
    node = max(index.pods_by_node, key=lambda n: len(index.pods_by_node[n]))
    for text in ("status", "idle", "quota", "pools", f"node {node}", f"pod {big.pods[0].key}", "top 50"):
        reply, _ = ask(text, big)
        within_slack_limits(reply)


def test_help_and_problems() -> None:
    text = blocks_text(help_reply().message())
    for usage, _ in c.USAGE.values():
        assert f"`/gpu {usage}`" in text
    assert "`/gpu pod NAMESPACE/NAME`" in blocks_text(help_reply("pod").message())
    problem = c.parse("idle <!channel>")
    assert isinstance(problem, c.Problem)
    shown = blocks_text(problem_reply(problem).message())
    assert "<!channel>" not in shown and "&lt;!channel&gt;" in shown
    assert "Usage: `/gpu idle [namespace | filter]`" in shown


def test_escaping_makes_markup_inert() -> None:
    assert esc("<!here> & <@U1|x>") == "&lt;!here&gt; &amp; &lt;@U1|x&gt;"

