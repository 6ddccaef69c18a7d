"""Benchmark the Slack bot's ack latency under concurrent slash commands, and its RSS.

    .venv/bin/python bench/bench_bot.py [--scale 20] [--concurrent 50] [--rounds 3] [--no-run]
    .venv/bin/python bench/bench_bot.py --testbed [--scale 2] [--rounds 8] [--profile FILE] [--compare DIR]
    flock /work/wt/bigbed.lock .venv/bin/python bench/bench_bot.py --testbed --scale 125 --rounds 8   # 10,000 GPU pods
    .venv/bin/python bench/bench_bot.py --testbed --pod-cpu-limit 1 --work-nice 0 --work-nice 5 [--work-nice ...]

A child process (this script with `--load`, Slack's side) sends, `--rounds`
times, `--concurrent` signed `/gpu` commands at once (status, idle, top, pools,
quota in turn) over real HTTP and measures, per command, request sent -> HTTP
answer (the ack Slack waits for, 3 s limit), and sent -> the reply's arrival on
a response_url it serves itself (a testbed.slack FakeSlack in the child, away
from the parent's work). With each round a playbook run goes with the burst
(unless --no-run): `/gpu run <reclaim> TARGET mode=immediate max_pods=5`,
planned and executed by the bot's engine while the commands are acked (its own
ack is measured apart). Rounds start back to back (each waits for its acks
only), so later runs overlap earlier ones.

Demo (default): `running_bot` in this process (as `gpuctl bot serve --demo` does,
tune_gc() and tune_switching() applied) on the simulated fleet at `--scale` (220 is about 10,000 GPU
pods), which keeps ticking (a metrics refresh every 2 s); the run is the shipped
reclaim-idle-gpus (idle_for=30m) on the demo's simulated API, TARGET one of the
namespaces with the most idle pods (a later run in a namespace may plan pods an
earlier one evicts: it is refused at execution, "... is gone", correctly). The simulator lives
in the bot's process: its work is in the numbers.

`--testbed`: the test bed at `--scale` (bench/_bed.py: 80 GPU pods per scale unit,
125 is 10,000 GPU pods on 12,500 devices; DCGM-exporter simulator, Prometheus
scraping every 1 s, every 15 s from scale 20 as `python -m testbed up` does) and
the real `gpuctl bot serve` as its own process, HTTP mode, as gpuctl-operator
(reading through deploy/rbac's gpuctl:reader, PlaybookRun CRD installed,
impersonating), metrics refresh `--refresh` s, idle window 60 s, the Web API at
testbed.slack's FakeSlack in this process (GPUCTL_SLACK_API_URL). The bench user
maps to user-a (team-a), whom the policy lets run the site playbook
reclaim-idle-gpus-now (the shipped one for idle streaks of seconds, as the
integration tests use it; no approval) in any namespace and RBAC lets evict
everywhere: each run evicts idle pods through the real Eviction API, TARGET
`pods=` five idle pods of one namespace (by the fleet's behaviours), no pod in
two runs, the namespaces in turn. The load
starts once `/gpu idle` counts 90 % of the fleet's idle pods and then, right before it, once
`/gpu status` answers have not said "metrics are stale" for 30 s (a CPU-starved bed's Prometheus falls behind for a
while; a bot whose runs are refused "GPU metrics are stale" does less work than one whose runs go ahead:
each bot's report says how many were refused, and how long it waited for fresh metrics; still stale after
--timeout, the load goes anyway, and the report says so). Reported besides: the bot's RSS
(settled before the load, after it, and its peak: VmHWM), the front door process's CPU per ack, how long
it and the bot's threads waited, runnable, for a CPU over the load (schedstat's run_delay: what
bot_work_nice changes), and Slack's side too (it times the acks: its waits are in them) and the load average; with --compare a summary table of every bot at the end, in
the order they ran.
`--compare DIR`: then the bot of another checkout (a worktree at another commit:
`git worktree add --detach DIR <commit>`) on the same bed, with namespaces of its
own where there are enough. `--work-nice N` (repeated): a bot of each checkout per value, in
the order given, at bot_work_nice N (GPUCTL_BOT_WORK_NICE). `--pod-cpu-limit CPUS`:
each bot in a fresh cpu cgroup of its own, its front door process too, as a pod with
requests = limits = CPUS (cgroup v1, as root; bench/_pod.py), the bed's processes
outside it: this box's kernel autogroup, which shares CPU between sessions before
nice applies, does not apply there, as in a pod; each bot's report adds the group's
CFS throttling over the load. `--profile FILE`: cProfile of this checkout's bot's
main loop thread during the load only (bench/_profiled.py; it slows the loop; the
acks are the front door process's and not in it), the
top functions printed, the stats kept in FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, command_line, fleet_summary, machine, mib, ms, rss_bytes, table
from _pod import check_writable, pod_cgroup
from _procs import proc_status

from testbed.procs import FRONT_DOOR, children, cpu_seconds, waited_seconds
from testbed.slack import BOT_TOKEN, FakeSlack, SlackSender, blocks_text
from testbed.waiting import poll

SECRET = "bench-signing-secret"
COMMANDS = ("status", "idle", "top 10", "pools", "quota")
USER = "U0BENCH01"
DEMO_IDENTITIES = f"users:\n  {USER}: {{user: demo-user, groups: ['demo:sre']}}\n"  # the demo policy's runner
BED_IDENTITIES = f"users:\n  {USER}: {{user: user-a, groups: [team-a]}}\n"
BED_PLAYBOOK = "reclaim-idle-gpus-now"  # tests/integration/engine_support.reclaim_now
BED_IDLE_WINDOW = "60s"
BED_POLICY = {"roles": {"bench-reclaim": {"groups": ["team-a"], "run": [BED_PLAYBOOK], "namespaces": ["*"]}},
              "unmapped": "read_only"}  # fmt: skip
BED_HOME = "gpuctl-bench"
REPLY_TIMEOUT_S = 300.0
RUN_PODS = 5  # pods per run (max_pods)
# The load waits until the bot sees this share of the fleet's idle pods idle: "some" was not enough at 10,000
# pods (the first bot's runs named pods whose streaks had not reached the window yet: all "not submitted").
IDLE_SEEN = 0.9
STALE = "metrics are stale"  # in an answer while the bot's metrics are (gpuctl.bot.answers)
# Fresh once was not enough: at full scale the bed's Prometheus fell behind again during the load (both first
# bots of a run had every run refused). Two of its 15 s scrapes.
FRESH_FOR_S = 30.0


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_text(playbook: str, target: str, idle_for: str) -> str:
    """`target`: namespace=NS, or pods=NS/A,NS/B,... (the pods to reclaim, when they are idle by then)."""
    return f"run {playbook} {target} mode=immediate idle_for={idle_for} max_pods={RUN_PODS}"


def pod_targets(idle: Sequence[str], count: int) -> list[str]:
    """`count` run targets of RUN_PODS idle pods each ("ns/name" keys), no pod in two, each run's pods
    from one namespace, the namespaces in turn (runs that go out together never plan the same pods)."""
    by_namespace: dict[str, list[str]] = {}
    for key in idle:
        by_namespace.setdefault(key.split("/", 1)[0], []).append(key)
    chunks = {ns: [keys[i : i + RUN_PODS] for i in range(0, len(keys), RUN_PODS)] for ns, keys in by_namespace.items()}
    targets: list[str] = []
    while len(targets) < count and any(chunks.values()):
        for queue in chunks.values():
            if queue and len(targets) < count:
                targets.append("pods=" + ",".join(queue.pop(0)))
    return targets


async def load(args: argparse.Namespace) -> None:
    """The child, Slack's side: send the commands, take the replies on response_urls of its own (a FakeSlack
    here, away from the test bed's exporter in the parent), print one JSON line per command: {text, sent
    (wall), ack (s), immediate, reply (s, sent -> reply arrived), said (a run's reply, first line)}; last
    {waited}: how long its threads waited, runnable, for a CPU (it times the acks: its waits are in them)."""
    async with FakeSlack() as slack:
        sender = SlackSender(args.load, SECRET, slack)

        async def one(text: str) -> dict[str, object]:
            body, rid, _ = sender.command_body(text, user_id=USER)
            headers = sender.sign(body)
            sent, start = time.time(), time.perf_counter()
            status, answer = await sender.post(body, headers)
            if status != 200:
                raise RuntimeError(f"{text}: HTTP {status} {answer}")
            return {"rid": rid, "sent": sent, "ack": time.perf_counter() - start, "immediate": bool(answer), "text": text}

        targets = json.loads(args.run) if args.run else []  # one per round, in turn
        results: list[dict[str, object]] = []
        for index in range(args.rounds):
            target = targets[index % len(targets)] if targets else None
            runs = [one(run_text(args.playbook, target, args.idle_for))] if target else []
            burst = [one(COMMANDS[i % len(COMMANDS)]) for i in range(args.concurrent)]
            results += await asyncio.gather(*runs, *burst)
        for r in results:
            if not r["immediate"]:
                first = (await slack.wait_for_calls(f"response:{r['rid']}", timeout_s=REPLY_TIMEOUT_S))[0]
                r["reply"] = first.at - float(r["sent"])  # type: ignore[arg-type]
                lines = blocks_text(first.args).splitlines()
                r["said"] = " / ".join([lines[0], *(line for line in lines if "Not submitted" in line or "not reclaimable" in line)])
            print(json.dumps(r), flush=True)
    print(json.dumps({"waited": waited_seconds(os.getpid())}), flush=True)  # last: how long Slack's side waited for a CPU


@dataclass
class Measured:
    acks: list[float] = field(default_factory=list)
    run_acks: list[float] = field(default_factory=list)
    replies: list[float] = field(default_factory=list)
    run_replies: list[float] = field(default_factory=list)
    run_lines: list[str] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""
    client_waited: float = 0.0  # s the load child (Slack's side: it times the acks) waited, runnable, for a CPU

    @property
    def refused_stale(self) -> int:
        """Runs the bot refused because its GPU metrics were stale (planned nothing, evicted nothing)."""
        return sum(1 for line in self.run_lines if "GPU metrics are stale" in line)


async def drive(url: str, args: argparse.Namespace, targets: Sequence[str], *, playbook: str, idle_for: str) -> Measured:
    """The load child against the bot at `url`: acks and reply latencies, the load average before and after."""
    target = ["--run", json.dumps(list(targets)), "--playbook", playbook, "--idle-for", idle_for] if targets else []
    measured = Measured(load_before=machine())
    # A session of its own: where the kernel's autogroup is on (this box), CPU is shared between sessions first,
    # and in the bench's session it waited behind the exporter simulator (session 9), timing that wait as the bot's.
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--load", url, "--concurrent", str(args.concurrent), "--rounds", str(args.rounds),
        *target, stdout=asyncio.subprocess.PIPE, cwd=REPO, start_new_session=True,
    )  # fmt: skip
    out, _ = await child.communicate()
    measured.load_after = machine()
    *results, last = [json.loads(line) for line in out.decode().splitlines()] or [{}]
    measured.client_waited = last.get("waited", 0.0)
    if child.returncode or len(results) != (args.concurrent + bool(targets)) * args.rounds:
        raise RuntimeError(f"load generator failed ({child.returncode}), {len(results)} results")
    for r in results:
        is_run = r["text"].startswith("run ")
        (measured.run_acks if is_run else measured.acks).append(r["ack"])
        if "reply" in r:
            (measured.run_replies if is_run else measured.replies).append(r["reply"])
        if is_run:
            measured.run_lines.append(f"# {r['text']}: {r.get('said', '(answered in the ack)')}")
    return measured


def report(m: Measured, *, fleet: str, rss: str, outcomes: str) -> None:
    print(f"# {command_line()}\n# {machine()}")
    print(f"# load average before the load {m.load_before.split('load ')[1].split(',')[0]}, "
          f"after it {m.load_after.split('load ')[1].split(',')[0]}")  # fmt: skip
    print(f"# {fleet}")
    print("\n".join(m.run_lines))
    rows = [
        [name, str(len(values)), ms(statistics.median(values)), ms(percentile(values, 0.99)), ms(max(values))]
        for name, values in (("ack (HTTP answer)", m.acks), ("reply on response_url", m.replies),
                             ("ack of the run", m.run_acks), ("run's reply (planned + executed)", m.run_replies)) if values
    ]  # fmt: skip
    print(table(["", "n", "p50", "p99", "max"], rows))
    print(f"RSS: {rss}")
    print(f"Slack's side (the load child, which times the acks) waited for a CPU {m.client_waited:.2f} s over the load")
    print(f"runs by outcome: {outcomes}")
    if m.run_lines:
        print(f"runs refused as stale: {m.refused_stale} of {len(m.run_lines)}")


# -- the demo, in this process ------------------------------------------------------------------


async def demo(args: argparse.Namespace) -> None:
    from gpuctl.bot.server import running_bot
    from gpuctl.config import Settings
    from gpuctl.query.fleet import idle_holders
    from gpuctl.service import tune_gc, tune_switching
    from gpuctl.sources.demo import DemoSource

    tune_gc()
    tune_switching()
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "config.yaml"
        config.write_text("{}\n")
        identities = Path(folder) / "ids.yaml"
        identities.write_text(DEMO_IDENTITIES)
        async with FakeSlack() as slack:
            settings = Settings(config_file=config, demo=True, slack_bot_token=BOT_TOKEN, slack_signing_secret=SECRET,
                                slack_api_url=slack.api_url, bot_host="127.0.0.1", bot_port=0,
                                slack_identity_map=identities, audit=str(Path(folder) / "audit.sqlite"))  # fmt: skip
            # The source directly: the demo_scale setting stops at 100 (a laptop's demo), the bench goes past it.
            fleet = DemoSource(seed=settings.demo_seed, scale=args.scale, tick_s=settings.refresh_s)
            rss_start = rss_bytes()
            async with running_bot(settings, sources=[fleet]) as bot:
                await bot.cluster.wait_ready(300)
                await bot.seam.connected(300)  # type: ignore[attr-defined]  # the demo's engine
                # The demo's idle streaks come with its first metrics ticks: wait a while for idle pods to reclaim;
                # without any, the run still plans over the namespaces with the most GPU pods (and finds nothing).
                with contextlib.suppress(TimeoutError):
                    await poll(bot.cluster.snapshot, lambda s: args.no_run or bool(idle_holders(s)), timeout_s=60,
                               what="idle pods in the demo fleet")  # fmt: skip
                snap = bot.cluster.snapshot()
                idle = Counter(p.namespace for p in idle_holders(snap)) or Counter(p.namespace for p in snap.pods)
                most = [] if args.no_run else [f"namespace={ns}" for ns, _ in idle.most_common(args.rounds)]
                await SlackSender(bot.url, SECRET, slack).command("help", user_id=USER)  # warm: Bolt's first request
                with DoorCpu(os.getpid()) as door_cpu:
                    measured = await drive(bot.url, args, most, playbook="reclaim-idle-gpus", idle_for="30m")
                rss_end, door = rss_bytes(), door_rss(os.getpid()) + door_cpu.said(measured)
                outcomes = dict(bot.metrics.runs.values)
    report(measured, fleet=f"demo fleet scale {args.scale}: {len(snap.pods)} GPU pods, {len(snap.gpus)} GPUs, "
                           f"{len(snap.nodes)} nodes", rss=f"{mib(rss_end)} after the run{door} ({mib(rss_start)} before the bot started)",
           outcomes=str(outcomes))  # fmt: skip


# -- the test bed, the bot as its own process ---------------------------------------------------


async def install(admin: object, home: str) -> None:
    """What an installation gives gpuctl-operator (deploy/: reads, the PlaybookRun CRD, its namespace's state),
    team-a's right to submit runs there, and RBAC letting team-a reclaim everywhere."""
    from _bed import RECLAIMER

    from testbed.kube import apply_objects, install_crds, load_manifests
    from testbed.objects import namespace_object, role_binding
    from tests.integration.engine_support import operator_read_grants, run_grants

    await install_crds(admin, REPO / "deploy" / "crds" / "playbookruns.gpuctl.io.yaml")  # type: ignore[arg-type]
    state = role_binding("operator-state", home, role="gpuctl:operator-state", group="gpuctl:operators", cluster_role=True)
    await apply_objects(admin, [*load_manifests(REPO / "deploy" / "rbac" / "playbookruns.yaml"), *operator_read_grants(),  # type: ignore[arg-type]
                                namespace_object(home), state, *run_grants(home), *RECLAIMER])  # fmt: skip


class BotProcess:
    """`gpuctl bot serve` (or under bench/_profiled.py) as a child process of this one."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: Path, *, cwd: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(list(argv), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)

    def status(self) -> dict[str, int]:
        return proc_status(self.proc.pid)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def healthy(self, url: str) -> dict[str, object] | None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"gpuctl bot serve exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as resp:
                return await resp.json() if resp.status == 200 else None
        except aiohttp.ClientError:
            return None

    async def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 30)
        except TimeoutError:
            self.proc.kill()
            return await asyncio.to_thread(self.proc.wait)


def door_rss(bot: int) -> str:
    """The RSS of the bot's front door process, apart from the bot's own ("" where it has none: the acks
    served in the bot's process, as before gpuctl.bot.front_door's process)."""
    doors = children(bot, FRONT_DOOR)
    return "".join(f" + front door process {mib(proc_status(pid)['VmRSS'])}" for pid in doors)


class DoorCpu:
    """Over a `with` block: the CPU time the bot's front door process used (none where it has none), and how
    long its threads and the bot's own waited, runnable, for a CPU (schedstat's run_delay: what priority
    changes)."""

    def __init__(self, bot: int) -> None:
        self.bot = bot
        self.doors = children(bot, FRONT_DOOR)
        self.used = self.door_waited = self.bot_waited = 0.0

    def __enter__(self) -> DoorCpu:
        self.used = -sum(cpu_seconds(pid) for pid in self.doors)
        self.door_waited = -sum(waited_seconds(pid) for pid in self.doors)
        self.bot_waited = -waited_seconds(self.bot)
        return self

    def __exit__(self, *_: object) -> None:
        self.used += sum(cpu_seconds(pid) for pid in self.doors)
        self.door_waited += sum(waited_seconds(pid) for pid in self.doors)
        self.bot_waited += waited_seconds(self.bot)

    def said(self, measured: Measured) -> str:
        acks = len(measured.acks) + len(measured.run_acks)
        if not (self.doors and acks):
            return ""
        return (f" (its CPU over the load: {self.used:.2f} s, {ms(self.used / acks)} per ack; waited for a CPU "
                f"{ms(self.door_waited / acks)} per ack; the bot's threads waited {self.bot_waited:.2f} s in all)")


def top_functions(stats_file: Path, count: int = 25) -> str:
    import io

    out = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=out)
    total = sum(t for _, _, t, _, _ in stats.stats.values())  # type: ignore[attr-defined]
    out.write(f"profiled loop thread: {total:.2f} s of own time in functions\n")
    stats.sort_stats("tottime").print_stats(count)
    stats.sort_stats("cumulative").print_stats(count)
    return out.getvalue()


@dataclass
class BotRun:
    """One bot's measurement on the test bed."""

    label: str
    measured: Measured
    ready_s: float
    rss: str
    outcomes: str
    fresh: str  # how the wait for fresh metrics before the load went
    waited: str  # the front door's wait for a CPU per ack, the bot's threads' in all (over the load)
    throttled: str  # with --pod-cpu-limit: the pod cgroup's CFS throttling over the load ("-" without)


@dataclass(frozen=True)
class Bot:
    """One bot to measure: its checkout (bench_e2e.Checkout), and its bot_work_nice where --work-nice sets it."""

    checkout: Any
    work_nice: int | None

    @property
    def label(self) -> str:
        return self.checkout.label + ("" if self.work_nice is None else f" nice {self.work_nice}")

    @property
    def env(self) -> dict[str, str]:
        nice = {} if self.work_nice is None else {"GPUCTL_BOT_WORK_NICE": str(self.work_nice)}
        return {**self.checkout.env, **nice}


async def measure_bot(which: Bot, gpuctl: list[str], env: dict[str, str], url: str, slack: FakeSlack,
                      targets: Sequence[str], idle_expected: int, args: argparse.Namespace, log: Path,
                      profile: Path | None) -> BotRun:  # fmt: skip
    """`gpuctl bot serve` until it serves and sees idle pods, then the load; with --pod-cpu-limit, inside a
    cpu cgroup of its own (its front door process too), removed once the bot has stopped."""
    checkout, label = which.checkout, which.label
    argv = ([sys.executable, str(checkout.path / "bench" / "_profiled.py"), str(profile), *gpuctl] if profile
            else [sys.executable, "-m", "gpuctl.cli", *gpuctl])  # fmt: skip
    cgroup = pod_cgroup(f"gpuctl-bench-bot-{os.getpid()}-{log.stem}", args.pod_cpu_limit) if args.pod_cpu_limit \
        else contextlib.nullcontext()  # fmt: skip
    started = time.monotonic()
    async with cgroup as pod:
        bot = BotProcess(pod.argv(argv) if pod else argv, {**env, **which.env}, log, cwd=checkout.path)
        try:
            await poll(lambda: bot.healthy(url), lambda h: bool(h and h["cluster_ready"] and h["engine"] == "connected"),
                       timeout_s=args.timeout, interval_s=0.5, what="the bot: cluster ready, engine connected")  # fmt: skip
            ready_s = time.monotonic() - started
            print(f"# {label}: the bot ready {ready_s:.1f} s after spawn: {mib(bot.status()['VmRSS'])}", flush=True)
            sender = SlackSender(url, SECRET, slack)
            await sender.command("help", user_id=USER)  # warm: Bolt's first request

            async def idle_pods() -> int:
                sent = await sender.command("idle", user_id=USER)
                said = str((await slack.wait_for_response(sent.response_id, timeout_s=60)).get("text", ""))
                return int(said.split(" pods hold", 1)[0]) if " pods hold" in said else 0

            if targets:  # the idle window must pass over Prometheus's readings first, for (nearly) every idle pod
                await poll(idle_pods, lambda n: n >= IDLE_SEEN * idle_expected, timeout_s=args.timeout, interval_s=5,
                           what=f"the bot to see {IDLE_SEEN:.0%} of the fleet's {idle_expected} idle pods")  # fmt: skip
            print(f"# {label}: idle pods seen {time.monotonic() - started:.1f} s after spawn", flush=True)
            fresh = await fresh_metrics(sender, slack, args.timeout)
            settled = bot.status()
            print(f"# {label}: {fresh}; the load starts" + (f"; in {pod}" if pod else ""), flush=True)
            if profile:
                bot.signal(signal.SIGUSR1)
            throttled_before = pod.throttling() if pod else None
            with DoorCpu(bot.proc.pid) as door_cpu:
                measured = await drive(url, args, targets, playbook=BED_PLAYBOOK, idle_for=BED_IDLE_WINDOW)
            throttled = str(pod.throttling() - throttled_before) if pod and throttled_before is not None else "-"
            if profile:
                bot.signal(signal.SIGUSR2)
            after, door = bot.status(), door_rss(bot.proc.pid) + door_cpu.said(measured)
            async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
                outcomes = [line for line in (await resp.text()).splitlines() if line.startswith("gpuctl_bot_runs_total")]
            if profile:
                await poll(lambda: profile.exists(), what="the profile written")
        finally:
            code = await bot.stop()
    rss = (f"bot settled {mib(settled['VmRSS'])}, after the load {mib(after['VmRSS'])}{door}, peak {mib(after['VmHWM'])} "
           f"(exit {code}; log {log})")  # fmt: skip
    acks = len(measured.acks) + len(measured.run_acks)
    door_bot = f"{ms(door_cpu.door_waited / acks)} / {door_cpu.bot_waited:.1f} s" if door_cpu.doors else "- / -"
    waited = f"{door_bot} / {measured.client_waited:.1f} s"
    return BotRun(label, measured, ready_s, rss, "; ".join(outcomes) or "none", fresh, waited, throttled)


async def fresh_metrics(sender: SlackSender, slack: FakeSlack, timeout_s: float) -> str:
    """Wait until the bot's `/gpu status` has not said its metrics are stale for FRESH_FOR_S (at most
    `timeout_s`); how it went."""
    started = time.monotonic()
    fresh_since: float | None = None

    async def fresh_for() -> float:
        nonlocal fresh_since
        sent = await sender.command("status", user_id=USER)
        stale = STALE in blocks_text(await slack.wait_for_response(sent.response_id, timeout_s=60))
        now = time.monotonic()
        fresh_since = None if stale else fresh_since or now
        return 0.0 if fresh_since is None else now - fresh_since

    try:
        await poll(fresh_for, lambda s: s >= FRESH_FOR_S, timeout_s=timeout_s, interval_s=2,
                   what=f"the bot's metrics fresh for {FRESH_FOR_S:g} s")  # fmt: skip
    except TimeoutError:
        return f"metrics not fresh for {FRESH_FOR_S:g} s within {timeout_s:.0f} s: measured anyway"
    return f"metrics fresh for {FRESH_FOR_S:g} s, {time.monotonic() - started:.1f} s after the wait began"


def summary(runs: Sequence[BotRun]) -> str:
    """One row per bot, in the order they ran: what a --compare reads side by side."""
    rows = []
    for run in runs:
        m = run.measured
        load = " → ".join(line.split("load ")[1].split(",")[0] for line in (m.load_before, m.load_after))
        refused = f"{m.refused_stale} of {len(m.run_lines)}" if m.run_lines else "-"
        rows.append([run.label, ms(statistics.median(m.acks)), ms(percentile(m.acks, 0.99)), ms(max(m.acks)),
                     ms(statistics.median(m.replies)) if m.replies else "-", run.waited, run.throttled, refused, run.fresh,
                     load])  # fmt: skip
    return table(["bot (in order)", "ack p50", "ack p99", "ack max", "reply p50", "waited for a CPU: door per ack / bot / Slack's side",
                  "pod cgroup over the load", "runs refused stale", "before the load", "load before → after"], rows)  # fmt: skip


async def testbed(args: argparse.Namespace) -> None:
    from _bed import fleet_bed
    from bench_e2e import Checkout

    from testbed.__main__ import LARGE_SCALE, LARGE_SCRAPE_S
    from testbed.controlplane import OPERATOR
    from testbed.process import free_port
    from tests.integration.engine_support import reclaim_now

    scrape_s = LARGE_SCRAPE_S if args.scale >= LARGE_SCALE else 1.0
    workdir = Path(tempfile.mkdtemp(prefix="gpuctl-bench-bot-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "KUBECONFIG", "PYTHONPATH"))}
    checkouts = [Checkout.of(REPO, env, this=True), *(Checkout.of(p, env, this=False) for p in args.compare)]
    bots = [Bot(checkout, nice) for nice in args.work_nice or [None] for checkout in checkouts]
    runs: list[BotRun] = []
    async with fleet_bed(workdir, scale=args.scale, scrape_s=scrape_s, timeout_s=args.timeout) as bed, FakeSlack() as slack:
        fleet = bed.fleet
        print(f"# setup: {fleet_summary(fleet)}; {bed.setup_line(scrape_s)}", flush=True)
        await install(bed.admin, BED_HOME)
        # Every run its own idle pods (by the fleet the exporter serves): no two plan the same pods.
        idle = [p.key for p in fleet.pods if p.behaviour == "idle" and p.node and p.gpu_keys]
        targets = [] if args.no_run else pod_targets(idle, args.rounds * len(bots))
        (workdir / "xdg").mkdir()
        (workdir / "ids.yaml").write_text(BED_IDENTITIES)
        (workdir / "policy.yaml").write_text(yaml.safe_dump(BED_POLICY))
        # `bot serve` has no --audit or --gpuctl-namespace flag: their GPUCTL_* variables, as a user sets them.
        env |= {"XDG_CONFIG_HOME": str(workdir / "xdg"), "GPUCTL_SLACK_BOT_TOKEN": BOT_TOKEN,
                "GPUCTL_SLACK_SIGNING_SECRET": SECRET, "GPUCTL_AUDIT": str(workdir / "audit.sqlite"),
                "GPUCTL_GPUCTL_NAMESPACE": BED_HOME}  # fmt: skip
        for index, bot in enumerate(bots):
            port = free_port()
            gpuctl = ["bot", "serve", "--kubeconfig", str(bed.plane.kubeconfig(OPERATOR)),
                      "--prometheus", bed.telemetry.monitoring.prometheus_url, "--refresh", f"{args.refresh:g}s",
                      "--idle-window", BED_IDLE_WINDOW, "--host", "127.0.0.1", "--port", str(port),
                      "--identity-map", str(workdir / "ids.yaml"), "--policy", str(workdir / "policy.yaml"),
                      "--playbooks-dir", str(reclaim_now(workdir)), "--slack-api-url", slack.api_url]  # fmt: skip
            mine = targets[index * args.rounds : (index + 1) * args.rounds]
            reclaimed = sum(t.count(",") + 1 for t in targets[: index * args.rounds])  # by the bots before
            profile = args.profile.resolve() if args.profile and index == 0 else None
            runs.append(await measure_bot(bot, gpuctl, env, f"http://127.0.0.1:{port}", slack, mine, len(idle) - reclaimed, args,
                                          workdir / f"bot-{index}-{bot.checkout.slug}.log", profile))  # fmt: skip
    for data in ("controlplane", "monitoring"):  # hundreds of MB at full scale; the bots' logs stay
        shutil.rmtree(workdir / data, ignore_errors=True)
    for run in runs:
        print(f"\n## {run.label}")
        report(run.measured, fleet=f"test bed scale {args.scale}: {fleet_summary(fleet)}; Prometheus scrapes every "
                                   f"{scrape_s:g} s; {bed.setup_line(scrape_s)}; the bot ready {run.ready_s:.1f} s after "
                                   f"spawn, refresh {args.refresh:g} s", rss=run.rss, outcomes=run.outcomes)  # fmt: skip
        if run.throttled != "-":
            print(f"pod cgroup ({args.pod_cpu_limit:g} CPU) over the load: {run.throttled}")
    if len(runs) > 1:
        print(f"\n## every bot, in the order they ran\n{summary(runs)}")
    if args.profile:
        print(top_functions(args.profile.resolve()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-run", action="store_true", help="no playbook run with each burst")
    parser.add_argument("--testbed", action="store_true", help="the real bot process against the test bed")
    parser.add_argument("--refresh", type=float, default=5.0, help="--testbed: the bot's metrics refresh, seconds")
    parser.add_argument("--timeout", type=float, default=300.0, help="--testbed: per wait, seconds")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="--testbed: cProfile the bot's loop during the load")
    parser.add_argument("--compare", type=Path, action="append", default=[], metavar="DIR",
                        help="--testbed: then the bot of this checkout (a worktree at another commit) on the same bed")
    parser.add_argument("--work-nice", type=int, action="append", default=[], metavar="N",
                        help="--testbed: a bot of each checkout per value, in the order given, at bot_work_nice N "
                             "(GPUCTL_BOT_WORK_NICE); default: one bot each at its own default")
    parser.add_argument("--pod-cpu-limit", type=float, metavar="CPUS",
                        help="--testbed: each bot (its front door too) in a fresh cpu cgroup of its own, as a pod with "
                             "requests = limits = CPUS (cgroup v1, root): nice applies there, not autogroup")
    parser.add_argument("--run", metavar="JSON", help=argparse.SUPPRESS)
    parser.add_argument("--playbook", help=argparse.SUPPRESS)
    parser.add_argument("--idle-for", help=argparse.SUPPRESS)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.pod_cpu_limit is not None:
        if not arguments.testbed or arguments.pod_cpu_limit <= 0:
            parser.error("--pod-cpu-limit takes a CPU count > 0, with --testbed")
        check_writable()
    asyncio.run(load(arguments) if arguments.load else testbed(arguments) if arguments.testbed else demo(arguments))
