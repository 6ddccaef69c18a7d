"""What a failed Prometheus request says: one line a person can act on (describe_error), from real requests."""

from __future__ import annotations

import asyncio

import pytest

from gpuctl.errors import MetricsUnavailable
from gpuctl.sources.prometheus import PrometheusSource


async def test_a_prometheus_that_never_answers_did_not_answer_in_time() -> None:
    # A server that accepts the request and never answers: the client's read timeout, which requests
    # reports as a ConnectionError when retries are configured (even none), not as a Timeout.
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    source = PrometheusSource(f"http://127.0.0.1:{port}", timeout_s=0.1)
    try:
        with pytest.raises(MetricsUnavailable, match=r"did not answer a query: Prometheus did not answer in time \("):
            await source.probe()
    finally:
        release.set()
        source.close()
        server.close()
        await server.wait_closed()
