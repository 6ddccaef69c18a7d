"""A failed refresh lets go of its answers at once: nothing of it waits for the cyclic collector.

`gpuctl top` runs the cyclic collector rarely (service.tune_gc), so whatever a
reference cycle holds stays in memory until then. An error raised out of a coroutine keeps the
coroutine's frame (its traceback), and the frame kept the refresh's answers: bytes and parsed
readings, MiBs per failed refresh at 12,500 GPUs (a loaded Prometheus times queries out).
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from collections.abc import Iterator, Mapping

import pytest
from prometheus_api_client import PrometheusApiClientException

from gpuctl.sources import queries
from gpuctl.sources.dcgm_fields import Quantity
from gpuctl.sources.prometheus import REFRESH_QUANTITIES, PrometheusSource
from testbed.waiting import poll

GPUS = 500


def _answer(promql: str) -> bytes:
    if '{__name__=~"' not in promql:  # the freshness query: no GPU moved
        result = []
    else:
        name = promql.split('{__name__=~"', 1)[1].split("|", 1)[0].split('"', 1)[0]
        result = [{"metric": {"__name__": name, "Hostname": f"n{i // 8}", "gpu": str(i % 8), "UUID": f"GPU-{i}"},
                   "value": [1_700_000_000.0, "1"]} for i in range(GPUS)]  # fmt: skip
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


class _LastQueryFails(PrometheusSource):
    """Every query answers with GPUS series, except the XID errors query: it fails once the others answered."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:1", refresh_s=60.0)
        self.failing = queries.instant(Quantity.XID)
        self.answered, self.others_answered = 0, threading.Event()
        self.lock = threading.Lock()

    def _get(self, path: str, params: Mapping[str, str], timeout_s: float) -> bytes:
        if params["query"] == self.failing:
            self.others_answered.wait(10)
            raise PrometheusApiClientException("HTTP Status Code 503 (b'overloaded')")
        with self.lock:
            self.answered += 1
            if self.answered == len(REFRESH_QUANTITIES):  # the other quantities and the freshness query
                self.others_answered.set()
        return _answer(params["query"])


@pytest.fixture
def no_cyclic_collection() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _failing_refresh(source: PrometheusSource) -> None:
    """fetch(), which must fail; the error dropped as the run loop drops it (pytest.raises would keep it)."""
    try:
        await source.fetch()
    except PrometheusApiClientException:
        return
    raise AssertionError("the refresh did not fail")


async def test_a_failed_refresh_leaves_no_answers_to_the_cyclic_collector(no_cyclic_collection: None) -> None:
    source = _LastQueryFails()
    try:
        await _failing_refresh(source)
        # The other answers are parsed by now or soon: wait until nothing of the refresh runs.
        await poll(lambda: len(asyncio.all_tasks()), lambda n: n == 1, timeout_s=10, interval_s=0.01,
                   what="the refresh's tasks to end")
    finally:
        source.close()
    # Kept by a cycle, the parsed answers were thousands of objects (a reading and a GPU identity per series).
    assert gc.collect() < GPUS
