"""The bot's HTTP front door in a process of its own: acks never wait for the main process's Python.

The main loop runs the cluster watches (10,000 pods), the Prometheus refresh, the answers (Block Kit) and the
playbook engine. An ack served by a thread beside it still shared its GIL: every syscall of the acking loop
gave the GIL up, and taking it back from the busy main thread waited out a switch interval, several times per
request. So over HTTP the listening socket, bound here (a bind error is raised here, port 0 resolved here),
is served by a child process (gpuctl.bot.door_process: its own interpreter and GIL): it verifies Slack's
signatures, skips repeats and acks (Bolt), and sends each request's `Tally` (what to count, what to do after
the ack) back over a socketpair; `take` runs it on the main loop. The other routes (/alertmanager, /healthz,
/metrics) are the main process's `routes`, served on a Unix socket in a private (0700) temporary directory,
to which the child relays them: one port, and /healthz still answered by the main loop.

The signing secret goes to the child as the first line on the socketpair, never on its command line nor in
its environment (no GPUCTL_* variable passes). The child ignores SIGINT and SIGTERM (they are this process's
to handle) and stops when its end of the socketpair reads EOF: when this context exits (it finishes the
requests in flight first, their Tallies still taken here) or when this process dies. A child that ends on
its own is logged and replaced after a second (doubling to 30 s while starting fails): the listening socket stays bound
here, so connections wait in its backlog meanwhile, and the bot's state (cluster, engine, runs in flight)
lives on. What the dead child had seen for skip_repeats dies with it; `AfterAck` keeps the keys of the work
it took, so a retry of a request whose Tally came but whose ack did not get out is still not acted on twice.

`work_nice` (the bot_work_nice setting, passed by the CLI's entry points): once the child serves, every
thread of this process is lowered to that nice (gpuctl.priority), so on a busy machine the child's acks
run before this process's work (answers, watches, refreshes, the engine). Children are started from a
thread kept at the first priority (a process starts with its creating thread's nice, and a lowered thread
cannot go back), so a restarted child has it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel

import gpuctl
from gpuctl.bot.app import Tally
from gpuctl.priority import Kept, lower_threads

log = logging.getLogger(__name__)

Address = tuple[str, int]
READY = b"ready\n"  # the child's first line: it serves
REMOTE_HEADER = "X-Gpuctl-Remote"  # a relayed request's client address (read only from the private socket)
LINE_LIMIT = 16 << 20  # one Tally: a button click's body carries the whole message it was on
RESTART_DELAY_S = (1.0, 30.0)  # after a child ended on its own: first delay, doubling to at most this
STOP_TIMEOUT_S = 75.0  # the child finishes its requests in flight (aiohttp's shutdown waits up to 60 s)
START_TIMEOUT_S = 120.0  # a child not serving by then is an error (imports on a loaded machine take seconds)


class DoorConfig(BaseModel):
    """The child's first line on the socketpair."""

    signing_secret: str
    upstream: str  # the Unix socket of the main process's routes
    log_level: int


def bind(host: str, port: int) -> socket.socket:
    """The bot's listening socket (port 0: any free one); OSError if the address is taken or not ours."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]  # "::" is IPv6
    return socket.create_server((host, port), family=family, backlog=1024)


def address(listener: socket.socket) -> Address:
    bound = listener.getsockname()
    return str(bound[0]), int(bound[1])


@contextlib.asynccontextmanager
async def served_here(app: web.Application, listener: socket.socket) -> AsyncIterator[None]:
    """Serve `app` on `listener` from this loop until exit (requests in flight are finished, as aiohttp's
    AppRunner.cleanup does)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, listener).start()
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def front_door(routes: web.Application, listener: socket.socket, *, signing_secret: str,
                     take: Callable[[Tally], None], work_nice: int = 0) -> AsyncIterator[None]:  # fmt: skip
    """Serve Slack's requests on `listener` from a child process and relay the others to `routes`, until exit.

    Returns once the child serves (RuntimeError if it could not start). `take` gets each request's Tally on
    this loop, in the order the child acked them. `work_nice` > 0: this process's threads are lowered to it
    then (for good: process-wide, so only entry points ask); the child keeps this thread's priority."""
    with tempfile.TemporaryDirectory(prefix="gpuctl-bot-") as private:  # mkdtemp: 0700, this user's only
        upstream = os.path.join(private, "routes.sock")
        async with served_here(routes, _unix_listener(upstream)):
            config = DoorConfig(signing_secret=signing_secret, upstream=upstream, log_level=logging.getLogger().getEffectiveLevel())
            door = _Door(listener, config, take)
            await door.start()
            try:
                if work_nice > 0:
                    _lower(work_nice, keep=door.spawner.tid)
                yield
            finally:
                await door.stop()


def _lower(nice: int, *, keep: int) -> None:
    try:
        lowered = lower_threads(nice, keep={keep})
    except PermissionError as e:  # a system that forbids it: the bot serves at one priority, as before
        log.warning("could not lower the bot's work to nice %d (its front door's acks keep no priority over it): %s", nice, e)
    else:
        log.debug("the bot's work lowered to nice %d (%d threads); its front door process kept its priority", nice, lowered)


def _unix_listener(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1024)
    return sock


class _Child:
    """One front door process and our end of its socketpair."""

    def __init__(self, process: subprocess.Popen[bytes], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer

    @classmethod
    async def start(cls, listener: socket.socket, config: DoorConfig, spawner: Kept) -> _Child:
        """Started from `spawner`'s thread (its priority is the child's)."""
        ours, theirs = socket.socketpair()
        with theirs:
            fds = (listener.fileno(), theirs.fileno())

            def spawn() -> subprocess.Popen[bytes]:  # its log goes to stderr, as ours
                return subprocess.Popen([sys.executable, "-m", "gpuctl.bot.door_process", *map(str, fds)], pass_fds=fds,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=_child_env())  # fmt: skip

            process = await spawner.run(spawn)
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=LINE_LIMIT)
        child = cls(process, reader, writer)
        try:
            writer.write(config.model_dump_json().encode() + b"\n")
            first = await asyncio.wait_for(reader.readline(), START_TIMEOUT_S)
            if first != READY:
                raise RuntimeError(f"the bot's front door process did not start (exit code {await child.wait()})")
        except BaseException:
            await child.kill()
            raise
        return child

    async def wait(self) -> int:
        """Its exit code, once it ended (waited for on a thread of the loop's executor)."""
        return await asyncio.to_thread(self.process.wait)

    async def kill(self) -> None:
        self.writer.close()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.wait()


def _child_env() -> dict[str, str]:
    """This process's environment without its GPUCTL_* settings (the secrets among them: the child needs only
    its DoorConfig), and with this gpuctl first on the child's path (a checkout run by path, as
    bench/_profiled.py does, serves with its own code)."""
    root = str(Path(gpuctl.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCTL_")}
    return env | {"PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}


class _Door:
    def __init__(self, listener: socket.socket, config: DoorConfig, take: Callable[[Tally], None]) -> None:
        self.listener = listener
        self.config = config
        self.take = take
        self.stopping = False
        self.child: _Child | None = None
        self.supervisor: asyncio.Task[None] | None = None
        self.spawner = Kept("gpuctl-bot-door-spawner")  # started now: before anything lowers this process

    async def start(self) -> None:
        try:
            self.child = await _Child.start(self.listener, self.config, self.spawner)
        except BaseException:
            self.spawner.close()
            raise
        self.supervisor = asyncio.create_task(self._supervise(self.child), name="gpuctl-bot-front-door")

    async def _supervise(self, child: _Child) -> None:
        delay = RESTART_DELAY_S[0]
        while True:
            await self._read(child)
            code = await child.wait()
            if self.stopping:
                return
            log.error("the bot's front door process ended (exit code %s): starting another in %.0f s", code, delay)
            await asyncio.sleep(delay)
            if self.stopping:
                return
            try:
                child = self.child = await _Child.start(self.listener, self.config, self.spawner)
                delay = RESTART_DELAY_S[0]
            except Exception:
                log.exception("the bot's front door process did not start again")
                delay = min(delay * 2, RESTART_DELAY_S[1])

    async def _read(self, child: _Child) -> None:
        """Take each Tally until the child's end closes (it stopped, or died)."""
        while line := await child.reader.readline():
            try:
                tally = Tally.model_validate_json(line)
            except ValueError:
                log.exception("a garbled line from the bot's front door process: %r", line[:200])
                continue
            try:
                self.take(tally)
            except Exception:
                log.exception("taking a request's tally failed")

    async def stop(self) -> None:
        """EOF to the child: it finishes its requests in flight (their Tallies taken) and exits."""
        self.stopping = True
        assert self.child is not None and self.supervisor is not None
        with contextlib.suppress(OSError):
            self.child.writer.write_eof()
        try:
            await asyncio.wait_for(asyncio.shield(self.supervisor), STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("the bot's front door process did not stop within %.0f s: killed", STOP_TIMEOUT_S)
        finally:
            self.supervisor.cancel()
            await asyncio.gather(self.supervisor, return_exceptions=True)
            await self.child.kill()  # the last one started (a restart may have raced the stop)
            self.spawner.close()
