"""Benchmark the Slack bot's ack latency under concurrent slash commands, and its RSS.

    .venv/bin/python bench/bench_bot.py [--scale 20] [--concurrent 50] [--rounds 3] [--no-run]

Runs `running_bot` (as `gpuctl bot serve --demo` does, tune_gc() applied) on
the simulated fleet at `--scale` (220 is about 10,000 GPU pods) with
testbed.slack's Web API stand-in in this process. A child process (this script
with `--load`) then sends, `--rounds` times, `--concurrent` signed `/gpu`
commands at once (status, idle, top, pools, quota in turn) over real HTTP and
measures, per command, request sent -> HTTP answer (the ack Slack waits for,
3 s limit); this process times the reply's arrival on response_url. The demo
source keeps ticking (a metrics refresh every 2 s) throughout, and with each
round a playbook run goes with the burst (unless --no-run): `/gpu run
reclaim-idle-gpus` in immediate mode for the namespace with the most idle pods,
planned and executed by the bot's engine on the demo's simulated API while the
commands are acked (its own ack is measured apart).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, command_line, machine, mib, ms, rss_bytes, table

from gpuctl.bot.server import running_bot
from gpuctl.config import Settings
from gpuctl.query.fleet import idle_holders
from gpuctl.service import tune_gc
from gpuctl.sources.demo import DemoSource
from testbed.slack import BOT_TOKEN, FakeSlack, SlackSender, blocks_text
from testbed.waiting import poll

SECRET = "bench-signing-secret"
COMMANDS = ("status", "idle", "top 10", "pools", "quota")
USER = "U0BENCH01"
IDENTITIES = f"users:\n  {USER}: {{user: demo-user, groups: ['demo:sre']}}\n"  # the demo policy's runner


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(args: argparse.Namespace) -> None:
    """The child: send the commands, print one JSON line per command {rid, sent (wall), ack (s), immediate}."""
    slack = FakeSlack()
    slack.port = args.slack_port  # only to build response_urls pointing at the parent's stand-in
    sender = SlackSender(args.load, SECRET, slack)

    async def one(text: str) -> dict[str, object]:
        body, rid, _ = sender.command_body(text, user_id=USER)
        headers = sender.sign(body)
        sent, start = time.time(), time.perf_counter()
        status, answer = await sender.post(body, headers)
        if status != 200:
            raise RuntimeError(f"{text}: HTTP {status} {answer}")
        return {"rid": rid, "sent": sent, "ack": time.perf_counter() - start, "immediate": bool(answer), "text": text}

    namespaces = args.run.split(",") if args.run else []  # one per round: a namespace reclaimed once stays reclaimed
    for index in range(args.rounds):
        target = namespaces[index % len(namespaces)] if namespaces else None
        runs = [one(f"run reclaim-idle-gpus namespace={target} mode=immediate idle_for=30m max_pods=5")] if target else []
        burst = [one(COMMANDS[i % len(COMMANDS)]) for i in range(args.concurrent)]
        for result in await asyncio.gather(*runs, *burst):
            print(json.dumps(result), flush=True)


async def main(args: argparse.Namespace) -> None:
    tune_gc()
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "config.yaml"
        config.write_text("{}\n")
        identities = Path(folder) / "ids.yaml"
        identities.write_text(IDENTITIES)
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
                most = ",".join(ns for ns, _ in idle.most_common(args.rounds))
                target = [] if args.no_run or not idle else ["--run", most]
                await SlackSender(bot.url, SECRET, slack).command("help", user_id=USER)  # warm: Bolt's auth.test
                child = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--load", bot.url, "--slack-port", str(slack.port),
                    "--concurrent", str(args.concurrent), "--rounds", str(args.rounds), *target,
                    stdout=asyncio.subprocess.PIPE, cwd=REPO,
                )  # fmt: skip
                out, _ = await child.communicate()
                results = [json.loads(line) for line in out.decode().splitlines()]
                if child.returncode or len(results) != (args.concurrent + bool(target)) * args.rounds:
                    raise RuntimeError(f"load generator failed ({child.returncode}), {len(results)} results")
                replies, run_replies = [], []
                for r in results:
                    if r["immediate"]:
                        continue
                    (call,) = await slack.wait_for_calls(f"response:{r['rid']}", timeout_s=300)
                    (run_replies if r["text"].startswith("run ") else replies).append(call.at - r["sent"])
                    if r["text"].startswith("run "):
                        print(f"# {r['text']}: {blocks_text(call.args).splitlines()[0]}")
                rss_end = rss_bytes()
                outcomes = dict(bot.metrics.runs.values)
    acks = [r["ack"] for r in results if not r["text"].startswith("run ")]
    run_acks = [r["ack"] for r in results if r["text"].startswith("run ")]
    print(f"# {command_line()}\n# {machine()}")
    print(f"# demo fleet scale {args.scale}: {len(snap.pods)} GPU pods, {len(snap.gpus)} GPUs, {len(snap.nodes)} nodes")
    rows = [
        [name, str(len(values)), ms(statistics.median(values)), ms(percentile(values, 0.99)), ms(max(values))]
        for name, values in (("ack (HTTP answer)", acks), ("reply on response_url", replies),
                             ("ack of the run", run_acks), ("run's reply (planned + executed)", run_replies)) if values
    ]  # fmt: skip
    print(table(["", "n", "p50", "p99", "max"], rows))
    print(f"RSS: {mib(rss_end)} after the run ({mib(rss_start)} before the bot started)")
    print(f"runs by outcome: {outcomes}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-run", action="store_true", help="no playbook run with each burst")
    parser.add_argument("--run", metavar="NAMESPACES", help=argparse.SUPPRESS)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--slack-port", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    asyncio.run(load(arguments) if arguments.load else main(arguments))
