"""Debian's PostgreSQL for the test bed: one server per pytest session, a fresh database per test.

The server is /usr/lib/postgresql/<newest>/bin/postgres (Debian's `postgresql`
package; scripts/test installs it), initialised with initdb in a temporary
directory and listening on a loopback port and a Unix socket in that directory.
Logins over TCP need a password (scram-sha-256); over the socket they are
trusted. Roles: `postgres` (superuser, for the tests' own tampering) and
`gpuctl` (what gpuctl logs in as; owns the databases made for tests). As root
(CI), the server runs as the `postgres` system user, because PostgreSQL refuses
to run as root; its directory is then made outside pytest's private tmp tree.

    async with Postgres(work_dir) as pg:
        url = pg.url(await pg.create_database())   # postgresql://gpuctl:...@127.0.0.1:PORT/audit_...
        async with await pg.superuser(db) as conn: ...   # psycopg AsyncConnection, autocommit
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import psycopg

from testbed.objects import unique
from testbed.process import Component, free_port

SUPERUSER = "postgres"
GPUCTL_USER = "gpuctl"


def postgres_bin_dir() -> Path:
    """The newest installed Debian PostgreSQL's bin directory."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("Debian's PostgreSQL is not installed (/usr/lib/postgresql/*/bin): scripts/test installs it")
    return found[-1].parent


class Postgres:
    def __init__(self, work_dir: Path, *, password: str = "s3cret pass/word@audit") -> None:
        self.work_dir = work_dir
        self.password = password  # both roles'; deliberately one that needs quoting in a URL
        self.port = free_port()
        self.bin_dir = postgres_bin_dir()
        self._system_user = _unprivileged_user() if os.geteuid() == 0 else None
        self._home: Path | None = None
        self._server: Component | None = None

    @property
    def socket_dir(self) -> Path:
        assert self._home is not None, "Postgres not started"
        return self._home

    @property
    def server(self) -> Component:
        assert self._server is not None, "Postgres not started"
        return self._server

    def url(self, database: str, *, user: str = GPUCTL_USER, password: str | None = None, scheme: str = "postgresql") -> str:
        """A TCP URL with the password in it (percent-encoded); `password` overrides the real one."""
        secret = quote(self.password if password is None else password, safe="")
        return f"{scheme}://{user}:{secret}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str, *, user: str = GPUCTL_USER) -> str:
        """A URL over the Unix socket, where logins are trusted (no password)."""
        return f"postgresql:///{database}?host={quote(str(self.socket_dir), safe='')}&port={self.port}&user={user}"

    async def start(self, *, timeout_s: float = 60.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        home = Path(tempfile.mkdtemp(prefix="gpuctl-pg-")) if self._system_user else self.work_dir / "pg"
        home.mkdir(exist_ok=True, mode=0o700)
        self._home = home
        if self._system_user:
            entry = pwd.getpwnam(self._system_user)
            os.chown(home, entry.pw_uid, entry.pw_gid)
        await asyncio.to_thread(self._initdb, home)
        self._server = Component(
            "postgres",
            [
                str(self.bin_dir / "postgres"), "-D", str(home / "data"), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={home}",
                "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=60",
            ],
            log_dir=self.work_dir,
            ready=self._accepts_logins,
            user=self._system_user,
            cwd=home,
            stop_signal=signal.SIGINT,  # "fast" shutdown: SIGTERM would wait for every client to leave
        )  # fmt: skip
        await self._server.start(timeout_s=timeout_s)
        async with await self.superuser("postgres") as conn:
            await conn.execute(f"CREATE ROLE {GPUCTL_USER} LOGIN PASSWORD {_literal(self.password)}")

    def _initdb(self, home: Path) -> None:
        pwfile = home / "pwfile"
        pwfile.write_text(self.password + "\n")
        as_user: dict[str, Any] = {}
        if self._system_user:
            entry = pwd.getpwnam(self._system_user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        argv = [
            str(self.bin_dir / "initdb"), "-D", str(home / "data"), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync",
        ]  # fmt: skip
        with (self.work_dir / "initdb.log").open("wb") as log:
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=home, check=False, **as_user)
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{(self.work_dir / 'initdb.log').read_text()}")

    async def _accepts_logins(self) -> bool:
        try:
            conn = await psycopg.AsyncConnection.connect(self.url("postgres", user=SUPERUSER), connect_timeout=2)
        except psycopg.OperationalError:
            return False
        await conn.close()
        return True

    async def superuser(self, database: str) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        """An autocommit connection as the superuser (over the socket), for setting up and tampering."""
        return await psycopg.AsyncConnection.connect(self.socket_url(database, user=SUPERUSER), autocommit=True)

    async def create_database(self, name: str | None = None, *, owner: str = GPUCTL_USER) -> str:
        """A new empty database owned by `owner`; its name."""
        name = name or unique("audit").replace("-", "_")
        async with await self.superuser("postgres") as conn:
            await conn.execute(f'CREATE DATABASE "{name}" OWNER {owner}')
        return name

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._system_user and self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)

    async def __aenter__(self) -> Postgres:
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _unprivileged_user() -> str:
    """Who runs the server when the tests run as root: Debian's `postgres` user, else `nobody`."""
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        return "nobody"
    return SUPERUSER


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
