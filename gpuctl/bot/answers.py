"""The read-only `/gpu` commands answered from one snapshot, as Block Kit.

Every number comes from gpuctl.query (states, FleetIndex, totals, idle
holders) and every format from gpuctl.render, so the bot says exactly what
`gpuctl top` and `gpuctl snapshot` say. Tables are narrow fixed-width blocks
(readable on a phone); long lists are cut with a count and the filter that
narrows them; every answer ends with how fresh its data is.
"""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Sequence

from gpuctl.bot import commands as cmd
from gpuctl.bot.blocks import Block, Reply, code, context, cut, esc, fields, header, notice, section
from gpuctl.model import Gpu, Snapshot
from gpuctl.query.filter import Facets, Filter
from gpuctl.query.fleet import FleetIndex, idle_holders, totals
from gpuctl.query.states import GpuState, PodState, gpu_state, pod_state
from gpuctl.render.format import (
    age,
    bar,
    gpu_count,
    mib,
    mig_state,
    node_status,
    num,
    owner,
    pct,
    short_model,
    sparkline,
    taints,
    truncate,
)
from gpuctl.render.summary import duration, health_lines, idle_definition, table

ROWS = 15  # rows of a list before it is cut
NAME_WIDTH = 48  # characters of a pod name in a table: most keys whole, so they can be pasted into `/gpu pod`
STRIP_WIDTH = 24  # cells of a pool's heat strip
_NAMESPACE_ONLY = frozenset({"namespace"})


def answer(command: cmd.Command, snap: Snapshot, index: FleetIndex) -> Reply:
    """The reply to a read-only command (one of commands.READ_ONLY)."""
    match command:
        case cmd.Status():
            reply = status(snap)
        case cmd.Idle(filter=flt):
            reply = idle(snap, index, flt)
        case cmd.Quota(namespace=namespace):
            reply = quota(snap, namespace)
        case cmd.Pools():
            reply = pools(snap)
        case cmd.NodeInfo(name=name):
            reply = node(snap, index, name)
        case cmd.PodInfo(namespace=namespace, name=name):
            reply = pod(snap, index, namespace, name)
        case cmd.Top(n=n, filter=flt):
            reply = top(snap, index, n, flt)
        case _:
            raise ValueError(f"{command!r} is not answered from a snapshot")
    reply.blocks.append(freshness(snap))
    return reply


def freshness(snap: Snapshot) -> Block:
    """When the data was taken, the cluster and metrics health, and any source that stopped."""
    return context(esc(f"data at {snap.taken_at:%H:%M:%S}Z · " + " · ".join(health_lines(snap))))


def _warnings(snap: Snapshot) -> list[Block]:
    """Loud, first: answers from a stopped source or stale metrics are not the live picture."""
    problems = [f"{f.source} stopped {f.since:%H:%M:%S}Z: {f.error}" for f in snap.failures]
    if not snap.watch.connected:
        problems.append(f"not connected to the cluster{': ' + snap.watch.error if snap.watch.error else ''}")
    if snap.metrics.stale and snap.metrics.source != "none":
        problems.append(f"metrics are stale{': ' + snap.metrics.error if snap.metrics.error else ''}")
    return [section(":warning: " + esc("; ".join(problems)))] if problems else []


def _filter_note(flt: Filter) -> str:
    return f" matching `{esc(flt.text)}`" if flt.active else ""


def status(snap: Snapshot) -> Reply:
    t = totals(snap)
    firing = [a for a in snap.alerts if a.state == "firing"]
    names = sorted({a.name for a in firing})
    alerts = "none" if not firing else f"{len(firing)}: " + esc(", ".join(names[:5]) + (", …" if len(names) > 5 else ""))
    blocks = [
        header("GPU fleet"),
        *_warnings(snap),
        fields([
            ("GPUs", f"{t.gpus} allocatable · {t.allocated} allocated · {t.free} free"),
            ("Allocated", f"{t.busy} busy · {t.idle} idle · {t.quiet} quiet"),
            ("Alerts firing", alerts),
            ("Nodes", f"{sum(p.nodes_ready for p in snap.pools)}/{sum(p.nodes for p in snap.pools)} ready"),
        ]),
    ]  # fmt: skip
    if snap.pools:
        blocks.append(code(_pool_table(snap, ROWS), more_hint="`/gpu pools` lists them all"))
    blocks.append(context(esc(idle_definition(snap))))
    text = f"GPUs: {t.busy} busy, {t.idle} idle, {t.free} free of {t.gpus}; {len(firing)} alerts firing"
    return Reply(text=text, blocks=blocks)


def _pool_table(snap: Snapshot, limit: int) -> list[str]:
    rows = [(p.name, f"{p.nodes_ready}/{p.nodes}", p.gpus_total, p.gpus_allocated, p.gpus_idle) for p in snap.pools[:limit]]
    lines = table(["pool", "ready", "gpus", "alloc", "idle"], rows, right=[False, True, True, True, True])
    if len(snap.pools) > limit:
        lines.append(f"… {len(snap.pools) - limit} more pools")
    return lines


def pools(snap: Snapshot) -> Reply:
    if not snap.pools:
        return notice("No GPU pools", "gpuctl sees no node that advertises GPUs.")
    shown = cut(list(snap.pools), 40)
    rows = [(p.name, f"{p.nodes_ready}/{p.nodes}", p.gpus_total, p.gpus_allocated, p.gpus_total - p.gpus_allocated,
             p.gpus_idle) for p in shown.shown]  # fmt: skip
    lines = table(["pool", "ready", "gpus", "alloc", "free", "idle"], rows, right=[False, True, True, True, True, True])
    models = [f"{p.name}: {', '.join(short_model(m) for m in p.gpu_models) or '—'}" for p in shown.shown]
    blocks = [header(f"GPU pools ({len(snap.pools)})"), *_warnings(snap), code(lines), code(["models", *models])]
    if shown.hidden:
        blocks.append(context(shown.note("pools", "`/gpu node NAME` for one node")))
    return Reply(text=f"{len(snap.pools)} GPU pools", blocks=blocks)


def idle(snap: Snapshot, index: FleetIndex, flt: Filter) -> Reply:
    holders = [p for p in idle_holders(snap) if flt.matches(index.pod_facets(p))]
    if not holders:
        return Reply(
            text="No idle GPU holders",
            blocks=[*_warnings(snap), section(f"No pod holds an idle GPU{_filter_note(flt)}."), context(esc(idle_definition(snap)))],
        )
    gpus = sum(p.gpus_total for p in holders)
    shown = cut(holders, ROWS)
    rows = [(truncate(p.key, NAME_WIDTH), p.gpus_total, duration(p.idle_for_s)) for p in shown.shown]
    lines = table(["pod", "gpus", "idle for"], rows, right=[False, True, True])
    blocks = [
        header(f"Idle GPU holders: {len(holders)} pods, {gpus} GPUs"),
        *_warnings(snap),
        *([section(f"Pods{_filter_note(flt)}, longest idle GPU-time first.")] if flt.active else []),
        code(lines),
    ]
    hint = "narrow with `/gpu idle ns:NAMESPACE` or `pool:NAME`; `/gpu pod NS/NAME` for one"
    blocks.append(context(*(t for t in (shown.note("idle pods", hint), esc(idle_definition(snap))) if t)))
    return Reply(text=f"{len(holders)} pods hold {gpus} idle GPUs", blocks=blocks)


def quota(snap: Snapshot, namespace: str | None) -> Reply:
    usage = {n.name: n for n in snap.namespaces}
    if namespace is not None and namespace in usage:
        n = usage[namespace]
        hard = "none" if n.gpu_quota_hard is None else f"{num(n.gpu_quota_used)} of {num(n.gpu_quota_hard)} used"
        pairs = [
            ("GPU quota", hard),
            ("Requested", f"{n.gpus_requested} devices"),
            ("Held GPUs", f"{n.gpus_busy} busy · {n.gpus_idle} idle"),
            ("GPU-hours", f"{n.gpu_hours:.1f}"),
        ]
        pairs += [(esc(res.removeprefix("nvidia.com/")), f"{num(n.mig_quota_used.get(res, 0))} of {num(hard_)} used")
                  for res, hard_ in sorted(n.mig_quota_hard.items())]  # fmt: skip
        return Reply(text=f"{namespace}: {hard}", blocks=[header(f"Namespace {namespace}"), *_warnings(snap), fields(pairs)])
    flt = Filter.parse(f"ns:{namespace}") if namespace else Filter()
    rows_of = [n for n in snap.namespaces if (n.gpu_quota_hard is not None or n.gpus_requested)
               and flt.matches(Facets(namespace=n.name), applies=_NAMESPACE_ONLY)]  # fmt: skip
    if not rows_of:
        where = f" matching {esc(repr(namespace))}" if namespace else ""
        return notice("No GPU quotas", f"No namespace{where} has a GPU quota or requests GPUs.")
    shown = cut(rows_of, 25)
    rows = [(truncate(n.name, 24), num(n.gpu_quota_hard), num(n.gpu_quota_used) if n.gpu_quota_hard is not None else "-",
             n.gpus_requested, n.gpus_idle) for n in shown.shown]  # fmt: skip
    lines = table(["namespace", "quota", "used", "req", "idle"], rows, right=[False, True, True, True, True])
    blocks = [header(f"GPU quotas ({len(rows_of)} namespaces)"), *_warnings(snap), code(lines)]
    blocks.append(context(shown.note("namespaces", "`/gpu quota NAMESPACE` for one") or "`/gpu quota NAMESPACE` for details"))
    return Reply(text=f"GPU quotas of {len(rows_of)} namespaces", blocks=blocks)


def _close(word: str, candidates: Sequence[str]) -> str:
    near = difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
    return f" Did you mean {', '.join(f'`{esc(n)}`' for n in near)}?" if near else ""


def _gpu_line(g: Gpu) -> tuple[str, ...]:
    state = gpu_state(g)
    held = g.pod.key if g.pod else "—"
    label = f"{g.index}" if g.mig_instance is None else f"{g.index}/mig{g.mig_instance}"
    shown = f"idle {duration(g.idle_for_s)}" if state is GpuState.IDLE else state.value
    return (label, shown, pct(g.util_pct), mib(g.mem_used_mib), num(g.temp_c, "C"), truncate(held, 28))


def node(snap: Snapshot, index: FleetIndex, name: str) -> Reply:
    n = index.nodes.get(name)
    if n is None:
        return notice("No such node", f"gpuctl sees no GPU node `{esc(name)}`.{_close(name, list(index.nodes))}")
    stats = index.stats(name)
    pairs = [
        ("Pool", esc(n.pool)),
        ("Model", esc(short_model(n.gpu_model))),
        ("Status", node_status(n)),
        ("GPUs", f"{gpu_count(n.gpu_allocatable, sum(n.mig_allocatable.values()), replicas=n.gpu_replicas)} allocatable · "
                 f"{gpu_count(n.gpu_requested, sum(n.mig_requested.values()), n.gpu_slices_requested)} requested"),
        ("Held GPUs", f"{stats.busy} busy · {stats.idle} idle · mean util {pct(stats.util_mean)}"),
        ("MIG config/state", esc(mig_state(n))),
        ("Taints", esc(taints(n))),
        ("Age", age(n.created, snap.taken_at)),
    ]  # fmt: skip
    blocks = [header(f"Node {name}"), *_warnings(snap), fields(pairs)]
    gpus = index.gpus_by_node.get(name, [])
    if gpus:
        blocks.append(code(table(["gpu", "state", "util", "mem", "temp", "pod"], [_gpu_line(g) for g in gpus])))
    pods = sorted(index.pods_by_node.get(name, []), key=lambda p: p.key)
    if pods:
        shown = cut(pods, ROWS)
        rows = [(truncate(p.key, NAME_WIDTH), p.gpus_total, pod_state(p, snap.idle_threshold_pct).value) for p in shown.shown]
        blocks.append(code(table(["pod", "gpus", "state"], rows, right=[False, True, False])))
        if shown.hidden:
            blocks.append(context(shown.note("pods", "`/gpu pod NS/NAME` for one")))
    return Reply(text=f"node {name}: {node_status(n)}, {stats.busy} busy, {stats.idle} idle", blocks=blocks)


def pod(snap: Snapshot, index: FleetIndex, namespace: str, name: str) -> Reply:
    key = f"{namespace}/{name}"
    p = index.pods.get(key)
    if p is None:
        same_ns = [q.name for q in snap.pods if q.namespace == namespace]
        return notice("No such GPU pod", f"gpuctl sees no pod `{esc(key)}` requesting GPUs.{_close(name, same_ns)}")
    state = pod_state(p, snap.idle_threshold_pct)
    shown_state = {PodState.IDLE: f"idle for {duration(p.idle_for_s)}", PodState.NOT_RUNNING: p.phase}.get(state, state.value)
    chain = " → ".join(f"{o.kind}/{o.name}" for o in p.owners) or owner(p)
    budgets = ", ".join(p.pdbs) or "none"
    evictable = {True: "yes", False: "no (its budget allows no disruption now)", None: "unknown"}[p.disruption_allowed]
    if len(p.pdbs) > 1:
        evictable = "no (more than one budget covers it)"
    pairs = [
        ("State", esc(shown_state)),
        ("Node", esc(p.node or "not scheduled")),
        ("GPUs", gpu_count(p.gpus, sum(p.mig.values()), p.gpu_slices)),
        ("Utilisation", pct(p.util_pct)),
        ("Owners", esc(chain)),
        ("Priority class", esc(p.priority_class or "—")),
        ("Disruption budgets", esc(budgets)),
        ("Evictable now", evictable),
        ("Age", age(p.created, snap.taken_at)),
    ]
    blocks = [header(f"Pod {truncate(key, 140)}"), *_warnings(snap), fields(pairs)]
    held = [index.gpus[k] for k in p.gpu_keys if k in index.gpus]
    if held:
        blocks.append(code(table(["gpu", "state", "util", "mem", "temp"], [(g.key, *_gpu_line(g)[1:5]) for g in held])))
    return Reply(text=f"pod {key}: {shown_state}", blocks=blocks)


def _heat_line(g: Gpu) -> str:
    return f"{bar(g.util_pct or 0.0, 100.0, 10)} {pct(g.util_pct):>4} {truncate(g.key, 22)} {truncate(g.pod.key if g.pod else '', 28)}"


def _strip(values: list[float]) -> str:
    """A pool's held GPUs, busiest first, sampled down to at most STRIP_WIDTH cells."""
    width = min(STRIP_WIDTH, len(values))
    if width == 0:
        return ""
    ordered = sorted(values, reverse=True)
    sampled: list[float | None] = [ordered[i * len(ordered) // width] for i in range(width)]
    return sparkline(sampled, width)


def top(snap: Snapshot, index: FleetIndex, n: int, flt: Filter) -> Reply:
    measured = [g for g in index.gpus.values() if g.pod is not None and g.util_pct is not None]
    if flt.active:
        measured = [g for g in measured if flt.matches(index.gpu_facets(g))]
    if not measured:
        return Reply(text="No measured GPUs", blocks=[*_warnings(snap), section(f"No held GPU with a utilisation reading{_filter_note(flt)}.")])
    busiest = heapq.nsmallest(n, measured, key=lambda g: (-(g.util_pct or 0.0), g.key))
    idlest = heapq.nsmallest(n, measured, key=lambda g: (g.util_pct or 0.0, -(g.idle_for_s or 0.0), g.key))
    by_pool: dict[str, list[float]] = {}
    for g in measured:
        by_pool.setdefault(g.pool, []).append(g.util_pct or 0.0)
    strips = [f"{truncate(pool, 12):<12} {_strip(utils):<{STRIP_WIDTH}} {len(utils)}" for pool, utils in sorted(by_pool.items())]
    hint = "narrow with `/gpu top N pool:NAME` or `ns:NAMESPACE`"
    blocks = [
        header(f"Top {n} GPUs{' (filtered)' if flt.active else ''}"),
        *_warnings(snap),
        section(f"*Busiest*{_filter_note(flt)}"),
        code([_heat_line(g) for g in busiest]),
        section("*Idlest*"),
        code([_heat_line(g) for g in idlest]),
        section("*Held GPUs by pool*, busiest to idlest"),
        code(strips[:ROWS] + ([f"… {len(strips) - ROWS} more pools"] if len(strips) > ROWS else [])),
        context(f"{len(measured)} held GPUs measured; {hint}"),
    ]
    return Reply(text=f"busiest GPU {busiest[0].key} at {pct(busiest[0].util_pct)}", blocks=blocks)


def help_reply(topic: str | None = None) -> Reply:
    if topic is not None:
        usage, what = cmd.USAGE[topic]
        return Reply(text=f"/gpu {usage}: {what}", blocks=[section(f"`/gpu {usage}`\n{what}")])
    lines = [f"`/gpu {usage}` {what}" for usage, what in cmd.USAGE.values()]
    return Reply(text="gpuctl commands", blocks=[section("*gpuctl* answers from the live cluster:\n" + "\n".join(lines))])


def problem_reply(problem: cmd.Problem) -> Reply:
    usage = f"`/gpu {cmd.USAGE[problem.verb][0]}`" if problem.verb else "`/gpu help` lists the commands"
    return notice("Can't read that", esc(problem.message), hint=f"Usage: {usage}")
