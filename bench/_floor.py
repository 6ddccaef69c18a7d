"""The floor of bench_e2e.py: the least any client pays to have the whole picture once.

    .venv/bin/python bench/_floor.py '<json arguments>'

Run as its own process, like gpuctl, so that interpreter start-up counts on
both sides. Concurrently: the paginated LIST (500 per page, as gpuctl's
reflector pages) of every kind the picture needs (nodes, pods, resource
quotas), each page's JSON parsed, and the same Prometheus instant queries
gpuctl sends per refresh, each answer's JSON parsed. Nothing is joined,
trimmed or kept. Prints one JSON line: the counts, and `done` (time.monotonic()
when the last answer was parsed).

Imports only what a minimal asyncio client needs (aiohttp, json, ssl).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from typing import Any

import aiohttp

PATHS = {"Node": "/api/v1/nodes", "Pod": "/api/v1/pods", "ResourceQuota": "/api/v1/resourcequotas"}


async def list_kind(session: aiohttp.ClientSession, server: str, kind: str, context: ssl.SSLContext) -> int:
    count, token = 0, None
    while True:
        params = {"limit": "500", **({"continue": token} if token else {})}
        async with session.get(server + PATHS[kind], params=params, ssl=context) as resp:
            if resp.status != 200:
                raise RuntimeError(f"list {kind}: HTTP {resp.status}")
            body = json.loads(await resp.read())
        count += len(body.get("items") or ())
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            return count


async def query(session: aiohttp.ClientSession, prometheus: str, promql: str) -> int:
    async with session.get(prometheus + "/api/v1/query", params={"query": promql}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"query {promql}: HTTP {resp.status}")
        body = json.loads(await resp.read())
    return len(body["data"]["result"])


async def floor(args: dict[str, Any]) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=args["ca"])
    context.load_cert_chain(args["cert"], args["key"])
    async with aiohttp.ClientSession() as session:
        counts = await asyncio.gather(
            *(list_kind(session, args["server"], kind, context) for kind in PATHS),
            *(query(session, args["prometheus"], q) for q in args["queries"]),
        )
    kinds = dict(zip(PATHS, counts[: len(PATHS)]))
    return {"done": time.monotonic(), **kinds, "series": sum(counts[len(PATHS):])}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(floor(json.loads(sys.argv[1])))))
