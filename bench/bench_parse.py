"""What a metrics refresh costs gpuctl itself (CPU and memory), with Prometheus's answers replayed.

    .venv/bin/python bench/bench_parse.py --capture /tmp/bed.json --answers /tmp/answers
    .venv/bin/python bench/bench_parse.py --answers /tmp/answers [--refreshes 6] [--repeat 3] [--compare DIR ...]

`--capture BED` runs one `PrometheusSource.fetch` against the Prometheus of a
held bed (bench/hold_bed.py's JSON) and saves every answer's bytes, by query,
in `--answers`. Then this process serves those bytes on loopback as
Prometheus's query API, and each checkout (this one, then every `--compare`
directory, taking turns per repetition) runs `--refreshes` real fetches
against it in a child process of its own (`python -m` from that checkout, as
bench_e2e runs gpuctl): requests, decoding, parsing and merging, the samples
of each refresh kept until the next (as the store keeps them), glibc's arenas
limited and free memory returned after each refresh (as `gpuctl top` does).

Per run it reports the child's CPU per refresh (time.process_time: the
machine is shared; wall time moves with the load), its RSS after the last
refresh and its peak (VmHWM). A checkout whose queries differ from the
captured ones fails (404): capture with the checkout under test.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from _common import REPO, command_line, machine, table


def _name(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16] + ".json"


async def capture(url: str, answers: Path) -> int:
    """One fetch against Prometheus at `url`, every answer saved by its query; the number of samples."""
    from gpuctl.sources.prometheus import PrometheusSource

    source = PrometheusSource(url)
    get = source._get

    def recorded(path: str, params: dict[str, str], timeout_s: float) -> bytes:  # on a request thread
        body = get(path, params, timeout_s)
        (answers / _name(params["query"])).write_bytes(body)
        return body

    source._get = recorded  # type: ignore[method-assign]
    batch = await source.fetch()
    source.close()
    return len(batch.samples)


def serve(answers: Path) -> ThreadingHTTPServer:
    class Replay(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query).get("query", [""])[0]
            path = answers / _name(query)
            body = path.read_bytes() if path.exists() else b'{"status": "error", "error": "not captured"}'
            self.send_response(200 if path.exists() else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def refresh(url: str, refreshes: int) -> tuple[list[float], int]:
    """`refreshes` fetches as `gpuctl top` makes them: CPU of each, and the last one's number of samples."""
    from gpuctl.memory import limit_arenas, release_free_memory
    from gpuctl.service import tune_gc
    from gpuctl.sources.prometheus import PrometheusSource

    limit_arenas()
    tune_gc()
    source = PrometheusSource(url)
    cpu: list[float] = []
    kept = None
    for _ in range(refreshes):
        started = time.process_time()
        kept = await source.fetch()  # kept until the next, as the store keeps a batch
        cpu.append(time.process_time() - started)
        release_free_memory()
    source.close()
    assert kept is not None
    return cpu, len(kept.samples)


def child(url: str, refreshes: int) -> None:
    cpu, samples = asyncio.run(refresh(url, refreshes))
    with open("/proc/self/status") as status:
        mem = {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in status) if k in ("VmRSS", "VmHWM")}
    print(json.dumps({"cpu": cpu, "rss": mem["VmRSS"], "hwm": mem["VmHWM"], "samples": samples}))


def run_child(checkout: Path, url: str, refreshes: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", url, "--refreshes", str(refreshes)],
                         env=env, cwd=checkout, capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=Path, help="the captured answers' directory")
    parser.add_argument("--capture", type=Path, metavar="BED", help="capture a refresh's answers from this held bed")
    parser.add_argument("--refreshes", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", type=Path, action="append", default=[], metavar="DIR")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        # The checkout under test is the working directory: _common put this one first on the path.
        sys.path[:] = [os.getcwd(), *(p for p in sys.path if p not in (str(REPO), str(REPO / "bench")))]
        import gpuctl

        if not Path(gpuctl.__file__).resolve().is_relative_to(Path.cwd().resolve()):
            raise RuntimeError(f"gpuctl imports from {gpuctl.__file__}, not from {Path.cwd()}")
        child(args.child, args.refreshes)
        return
    if args.capture:
        args.answers.mkdir(parents=True, exist_ok=True)
        samples = asyncio.run(capture(json.loads(args.capture.read_text())["prometheus"], args.answers))
        print(f"captured {len(list(args.answers.glob('*.json')))} answers ({samples} samples) in {args.answers}")
        return
    print(f"command: {command_line()}\nmachine: {machine()}")
    server = serve(args.answers)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    checkouts = [REPO, *(p.resolve() for p in args.compare)]
    runs: dict[Path, list[dict[str, float]]] = {c: [] for c in checkouts}
    for rep in range(args.repeat):
        for checkout in checkouts if rep % 2 == 0 else checkouts[::-1]:
            runs[checkout].append(run_child(checkout, url, args.refreshes))
    server.shutdown()
    rows = []
    for checkout, results in runs.items():
        cpu = [c for r in results for c in r["cpu"][1:]]  # the first refresh also pays for imports' first use
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        rows.append([f"{checkout} ({commit.stdout.strip()})", f"{statistics.median(cpu) * 1000:.0f} ms ({min(cpu) * 1000:.0f}–{max(cpu) * 1000:.0f})",
                     " / ".join(f"{r['rss']:.1f}" for r in results), " / ".join(f"{r['hwm']:.1f}" for r in results),
                     str(results[0]["samples"])])  # fmt: skip
    print(table(["checkout", "CPU per refresh, median (min–max)", "RSS after, MiB", "peak, MiB", "samples"], rows))
    print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    main()
