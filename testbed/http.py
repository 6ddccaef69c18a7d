"""A small aiohttp server on loopback, the base of the test bed's fake endpoints
(the DCGM-exporter simulator, static exporters, the Alertmanager webhook)."""

from __future__ import annotations

from typing import Self

from aiohttp import web


class LoopbackServer:
    """Subclasses add their routes in `routes`; `port` 0 picks a free one, and a
    restart binds the same port again (a scrape target must not move)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
