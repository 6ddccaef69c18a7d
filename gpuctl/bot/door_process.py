"""`python -m gpuctl.bot.door_process LISTEN_FD CONTROL_FD`: the bot's front door, a process of its own.

Started by gpuctl.bot.front_door with the bot's listening socket and one end of a socketpair. Its first line
there is the `DoorConfig` (the signing secret travels there, never on the command line). It serves:

    POST /slack/events   Bolt (gpuctl.bot.app.build_app): signature checked, repeats skipped, acked; each
                         request's Tally sent to the main process as one JSON line before its HTTP answer
    anything else        relayed to the main process's routes on their private Unix socket (method, path,
                         headers, the body as it streams in; their status, headers and body relayed back)

It ignores SIGINT and SIGTERM (Ctrl-C, or a stop sent to the whole process group, is the main process's to
handle) and stops on EOF from the socketpair: the main process closed it or died. Stopping finishes the
requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request

from gpuctl.bot.alerts import MAX_BODY
from gpuctl.bot.app import EVENTS_PATH, Deliveries, Tally, acked, build_app
from gpuctl.bot.front_door import READY, REMOTE_HEADER, DoorConfig

log = logging.getLogger(__name__)

# Not relayed (hop-by-hop, RFC 9110 7.6.1, or set by aiohttp itself); the other headers go as they came.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "date", "server", REMOTE_HEADER.lower()})  # fmt: skip


def door_app(config: DoorConfig, send: Callable[[Tally], None], session: aiohttp.ClientSession) -> web.Application:
    """Slack's route acked here (each Tally to `send` before its answer), every other request relayed."""
    bolt = build_app(signing_secret=config.signing_secret, deliveries=Deliveries())

    async def slack_events(request: web.Request) -> web.StreamResponse:
        try:
            bolt_request = await to_bolt_request(request)
        except UnicodeDecodeError:  # Slack sends UTF-8; anything else is not Slack
            return web.json_response({"error": "the body is not UTF-8"}, status=400)
        response, tally = await acked(bolt.async_dispatch(bolt_request), lambda: bolt_request.body)
        send(tally)
        return await to_aiohttp_response(response)

    async def relay(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers[REMOTE_HEADER] = request.remote or ""
        body = request.content if request.body_exists else None
        async with session.request(request.method, f"http://gpuctl{request.rel_url}", headers=headers, data=body,
                                   allow_redirects=False) as answer:  # fmt: skip
            content = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP | {"content-length"}}
            return web.Response(status=answer.status, body=content, headers=kept)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(EVENTS_PATH, slack_events)
    app.router.add_route("*", "/{path:.*}", relay)
    return app


async def serve(listen_fd: int, control_fd: int) -> None:
    listener = socket.socket(fileno=listen_fd)
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=control_fd))
    config = DoorConfig.model_validate_json(await reader.readline())
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s (front door): %(message)s")  # as gpuctl.cli's  # fmt: skip

    def send(tally: Tally) -> None:
        writer.write(tally.model_dump_json().encode() + b"\n")  # written at once: before the ack goes out

    connector = aiohttp.UnixConnector(config.upstream)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)) as session:
        runner = web.AppRunner(door_app(config, send, session), access_log=None)
        await runner.setup()
        try:
            await web.SockSite(runner, listener).start()
            writer.write(READY)
            await reader.read()  # until EOF: the main process closed its end, or ended
        finally:
            await runner.cleanup()  # the requests in flight are finished (their Tallies sent)
            writer.close()


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # the main process stops this one, in order (EOF)
        signal.signal(sig, signal.SIG_IGN)
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
