"""`gpuctl audit ...` against PostgreSQL (and the same commands against SQLite): output, exit codes,
and the errors for a database that is down, a wrong password or an empty database, never
showing the password."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import pytest

from gpuctl.audit import open_audit
from gpuctl.cli import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, EXIT_TAMPERED, main
from gpuctl.errors import AuditUnavailable
from testbed.postgres import Postgres
from testbed.process import free_port
from tests.unit.audit.factories import run_events, tamper, ticking

pytestmark = pytest.mark.testbed


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith(("GPUCTL_", "PG"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


async def gpuctl(*args: str) -> tuple[int, str, str]:
    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(args), out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(run)


async def write_runs(location: str) -> None:
    async with open_audit(location, clock=ticking()) as log:
        for event in run_events("reclaim-7f3a") + run_events("quota-2")[:5]:
            await log.append(event)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_every_verb_on_either_backend(backend: str, postgres_audit_url: str, tmp_path: Path, postgres: Postgres) -> None:
    """The same log in each backend: list, show, head, export and verify print the same, and a change
    made behind gpuctl's back makes verify exit 5."""
    location = postgres_audit_url if backend == "postgresql" else str(tmp_path / "audit.sqlite")
    await write_runs(location)
    shown = location.replace("s3cret%20pass%2Fword%40audit", "***")

    code, out, err = await gpuctl("audit", "list", "--audit", location)
    assert code == EXIT_OK and err == "" and len(out.splitlines()) == 13
    code, out, _ = await gpuctl("audit", "show", "quota-2", "--audit", location)
    assert code == EXIT_OK and "state: in flight, last: api_call" in out
    code, head, _ = await gpuctl("audit", "head", "--audit", location)
    assert code == EXIT_OK and head.startswith("12:")
    code, export, _ = await gpuctl("audit", "export", "--audit", location)
    rows = [json.loads(line) for line in export.splitlines()]
    assert code == EXIT_OK and [r["seq"] for r in rows] == list(range(1, 13))
    code, out, err = await gpuctl("audit", "verify", "--audit", location, "--expect-head", head.strip())
    assert code == EXIT_OK and err == ""
    assert out.startswith(f"intact: 12 records, chain unbroken ({shown})\n")

    if backend == "postgresql":
        async with await postgres.superuser(location.rsplit("/", 1)[1]) as conn:
            await conn.execute("SET session_replication_role = replica")  # past the append-only trigger
            await conn.execute("UPDATE gpuctl_audit_records SET payload = '{\"comment\":\"rubber stamp\"}' WHERE seq = 3")
    else:
        tamper(Path(location), "UPDATE audit_records SET payload = '{\"comment\":\"rubber stamp\"}' WHERE seq = 3")
    code, out, err = await gpuctl("audit", "verify", "--audit", location)
    assert code == EXIT_TAMPERED == 5 and out == ""
    assert err.startswith(f"gpuctl: error: audit log {shown} is not intact: record 3 was changed after it was written")
    assert "s3cret" not in err


async def test_the_same_export_from_both_backends(postgres_audit_url: str, tmp_path: Path) -> None:
    sqlite = str(tmp_path / "audit.sqlite")
    await write_runs(postgres_audit_url)
    await write_runs(sqlite)
    from_postgres = await gpuctl("audit", "export", "--audit", postgres_audit_url)
    from_sqlite = await gpuctl("audit", "export", "--audit", sqlite)
    assert from_postgres == from_sqlite and from_postgres[1].count("\n") == 12
    exported = tmp_path / "export.jsonl"
    exported.write_text(from_postgres[1])
    code, out, _ = await gpuctl("audit", "verify", "--file", str(exported))
    assert code == EXIT_OK and out.startswith("intact: 12 records")


async def test_a_database_that_is_down_is_exit_1_and_names_it_without_the_password(postgres: Postgres) -> None:
    url = postgres.url("audit", password="hunter2 secret").replace(f":{postgres.port}/", f":{free_port()}/")
    code, out, err = await gpuctl("audit", "verify", "--audit", url)
    assert code == EXIT_ERROR and out == ""
    assert err.startswith("gpuctl: error: cannot connect to the audit database postgresql://gpuctl:***@127.0.0.1:")
    assert "Connection refused" in err and "check that PostgreSQL is up" in err
    assert "hunter2" not in err and "secret" not in err
    with pytest.raises(AuditUnavailable):
        async with open_audit(url):
            pass


async def test_a_wrong_password_is_exit_1_without_the_password(postgres: Postgres, postgres_audit_url: str) -> None:
    database = postgres_audit_url.rsplit("/", 1)[1]
    url = postgres.url(database, password="not-the-password")
    code, _, err = await gpuctl("audit", "head", "--audit", url)
    assert code == EXIT_ERROR
    assert 'password authentication failed for user "gpuctl"' in err and "not-the-password" not in err
    # And the right password from the environment (libpq's PGPASSWORD), not the URL, gets in.
    await write_runs(postgres_audit_url)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PGPASSWORD", postgres.password)
        code, out, err = await gpuctl("audit", "head", "--audit", f"postgres://gpuctl@127.0.0.1:{postgres.port}/{database}")
    assert code == EXIT_OK and out.startswith("12:"), err


async def test_an_empty_database_has_no_log_to_read(postgres: Postgres) -> None:
    database = await postgres.create_database()
    code, _, err = await gpuctl("audit", "list", "--audit", postgres.socket_url(database))
    assert code == EXIT_ERROR and "no audit log in postgresql:///" in err
    async with await postgres.superuser(database) as conn:  # read-only commands created nothing
        found = await conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'gpuctl_audit_%'")
        assert await found.fetchone() == (0,)


async def test_a_newer_or_partial_schema_is_refused(postgres: Postgres, postgres_audit_url: str) -> None:
    await write_runs(postgres_audit_url)
    database = postgres_audit_url.rsplit("/", 1)[1]
    async with await postgres.superuser(database) as conn:
        await conn.execute("UPDATE gpuctl_audit_schema SET version = 9")
    code, _, err = await gpuctl("audit", "head", "--audit", postgres_audit_url)
    assert code == EXIT_ERROR and "written by a newer gpuctl (schema 9, this one knows 1)" in err

    partial = await postgres.create_database()
    async with await postgres.superuser(partial) as conn:
        await conn.execute("CREATE TABLE gpuctl_audit_records (seq bigint)")
    code, _, err = await gpuctl("audit", "head", "--audit", postgres.url(partial))
    assert code == EXIT_ERROR and "has some of gpuctl's audit tables but not all" in err


async def test_bad_urls_are_configuration_errors(tmp_path: Path) -> None:
    code, _, err = await gpuctl("audit", "head", "--audit", "postgresql://gpuctl:hunter2@127.0.0.1/db?nonsense=1")
    assert code == EXIT_CONFIG and 'invalid URI query parameter: "nonsense"' in err and "hunter2" not in err
    config = tmp_path / "gpuctl.yaml"
    config.write_text("audit: postgresql://gpuctl:hunter2@127.0.0.1:99999/db\n")
    code, _, err = await gpuctl("audit", "head", "--config", str(config))
    assert code == EXIT_CONFIG and "port is not a number" in err and "hunter2" not in err
