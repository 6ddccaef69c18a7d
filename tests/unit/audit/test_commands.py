"""`gpuctl audit ...` through gpuctl.cli.main: output, and exit codes (0 ok, 1 error, 2 bad input, 5 tampered)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gpuctl.audit import AuditEvent, AuditRecord, EventKind, VerifyResult, open_audit, verify_rows
from gpuctl.cli import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, EXIT_TAMPERED, main
from gpuctl.clock import utcnow

from .factories import run_events, tamper, ticking


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in [n for n in __import__("os").environ if n.startswith("GPUCTL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield


def gpuctl(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A log with two runs: one two hours old and ended, one a minute old and in flight."""
    path = tmp_path / "audit.sqlite"
    old = utcnow() - timedelta(hours=2)

    async def write() -> None:
        async with open_audit(str(path), clock=ticking(old)) as log:
            for event in run_events("reclaim-7f3a"):
                await log.append(event)
        async with open_audit(str(path), clock=ticking(utcnow() - timedelta(minutes=1))) as log:
            for event in run_events("quota-2")[:5]:
                await log.append(event)

    asyncio.run(write())
    return path


def test_list(db: Path) -> None:
    code, out, err = gpuctl("audit", "list", "--audit", str(db))
    assert code == EXIT_OK and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "(UTC)", "RUN", "KIND", "BY", "DETAIL"]
    assert len(lines) == 13
    assert "approved" in lines[3] and "user-b (team-b, oncall) via slack" in lines[3]
    assert lines[5].endswith("POST /api/v1/namespaces/team-a/pods/train-0/eviction → 201")
    assert lines[12].split()[0] == "12" and "quota-2" in lines[12]


def test_list_filters(db: Path) -> None:
    code, out, _ = gpuctl("audit", "list", "--audit", str(db), "--run", "quota-2")
    assert code == 0 and len(out.splitlines()) == 6 and "reclaim-7f3a" not in out
    code, out, _ = gpuctl("audit", "list", "--audit", str(db), "--since", "30m")
    assert code == 0 and len(out.splitlines()) == 6 and "reclaim-7f3a" not in out
    code, out, _ = gpuctl("audit", "list", "--audit", str(db), "--limit", "3")
    lines = out.splitlines()
    assert code == 0 and [line.split()[0] for line in lines[1:4]] == ["10", "11", "12"]
    assert lines[4] == "(the last 3 shown; --limit N for more)"
    code, out, _ = gpuctl("audit", "list", "--audit", str(db), "--run", "nothing-here")
    assert code == 0 and out == "no records\n"


def test_list_json_is_the_export_form(db: Path) -> None:
    code, out, _ = gpuctl("audit", "list", "--audit", str(db), "--json", "--run", "reclaim-7f3a")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["seq"] for r in rows] == list(range(1, 8))
    assert verify_rows(rows).ok
    assert AuditRecord.model_validate(rows[0]).kind is EventKind.REQUESTED


def test_show(db: Path) -> None:
    code, out, _ = gpuctl("audit", "show", "reclaim-7f3a", "--audit", str(db))
    assert code == 0
    assert out.startswith("run reclaim-7f3a: 7 records, seq 1–7, ")
    assert "state: completed (ended)\nstarted by user-a (team-a) via cli\n" in out
    assert "       comment: ok, idle since Friday" in out
    call = "       POST /api/v1/namespaces/team-a/pods/train-0/eviction → 201 audit-id 4f1c1a8e-2c7e-4d7e-9a8e-0d1c2b3a4f5e"
    assert f"{call}\n       result:\n         reason: Evicted\n#6" in out
    code, out, _ = gpuctl("audit", "show", "quota-2", "--audit", str(db))
    assert "state: in flight, last: api_call" in out
    code, out, _ = gpuctl("audit", "show", "quota-2", "--audit", str(db), "--json")
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [8, 9, 10, 11, 12]


def test_show_unknown_run(db: Path) -> None:
    code, out, err = gpuctl("audit", "show", "nope", "--audit", str(db))
    assert code == EXIT_ERROR and out == ""
    assert err == f"gpuctl: error: no run 'nope' in the audit log {db} (`gpuctl audit list` shows runs)\n"


def test_verify_intact(db: Path) -> None:
    code, out, err = gpuctl("audit", "verify", "--audit", str(db))
    assert code == EXIT_OK and err == ""
    assert out.startswith(f"intact: 12 records, chain unbroken ({db})\nhead 12:")
    assert "cannot show records cut from its end" in out


def test_verify_tampered_exits_5_with_one_line(db: Path) -> None:
    tamper(db, 'UPDATE audit_records SET payload = \'{"comment":"rubber stamp"}\' WHERE seq = 3')
    code, out, err = gpuctl("audit", "verify", "--audit", str(db))
    assert code == EXIT_TAMPERED == 5 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"gpuctl: error: audit log {db} is not intact: record 3 was changed after it was written")
    assert "(2 records verified before that)" in err

    code, out, err = gpuctl("audit", "verify", "--audit", str(db), "--json")
    result = VerifyResult.model_validate_json(out)
    assert code == 5 and not result.ok and result.problem is not None and result.problem.kind == "edited"
    assert len(result.problem.expected) == len(result.problem.found) == 64

    code, _, err = gpuctl("audit", "list", "--audit", str(db))  # list does not judge, it reads what parses
    assert code == 0


def test_head_and_expect_head(db: Path) -> None:
    code, out, _ = gpuctl("audit", "head", "--audit", str(db))
    anchor = out.strip()
    assert code == 0 and anchor.startswith("12:") and len(anchor) == 3 + 64
    code, out, _ = gpuctl("audit", "head", "--audit", str(db), "--json")
    assert code == 0 and json.loads(out)["anchor"] == anchor

    code, out, _ = gpuctl("audit", "verify", "--audit", str(db), "--expect-head", anchor)
    assert code == 0 and f"the kept head 12:{anchor[3:15]}… is in the log" in out

    tamper(db, "DELETE FROM audit_records WHERE seq > 10")
    code, _, _ = gpuctl("audit", "verify", "--audit", str(db))
    assert code == 0  # a shorter chain is still a chain
    code, _, err = gpuctl("audit", "verify", "--audit", str(db), "--expect-head", anchor)
    assert code == 5 and "the log ends at record 10 but record 12 was kept as a head" in err

    code, _, err = gpuctl("audit", "verify", "--audit", str(db), "--expect-head", "12:abc")
    assert code == EXIT_CONFIG and "--expect-head: '12:abc' is not an anchor SEQ:HASH" in err


def test_export_and_verify_offline(db: Path, tmp_path: Path) -> None:
    code, out, _ = gpuctl("audit", "export", "--json", "--audit", str(db))
    assert code == 0 and len(out.splitlines()) == 12
    exported = tmp_path / "export.jsonl"
    exported.write_text(out)
    code, out, _ = gpuctl("audit", "verify", "--file", str(exported))
    assert code == 0 and out.startswith(f"intact: 12 records, chain unbroken ({exported})")

    lines = exported.read_text().splitlines()
    row = json.loads(lines[6])
    row["actor"]["identity"]["user"] = "someone-else"
    lines[6] = json.dumps(row)
    exported.write_text("\n".join(lines) + "\n")
    code, _, err = gpuctl("audit", "verify", "--file", str(exported))
    assert code == 5 and "record 7 was changed" in err

    exported.write_text("not json\n")
    code, _, err = gpuctl("audit", "verify", "--file", str(exported))
    assert code == 5 and "line 1 is not a JSON record" in err
    code, _, err = gpuctl("audit", "verify", "--file", str(tmp_path / "missing.jsonl"))
    assert code == EXIT_CONFIG and "--file: cannot read" in err


def test_empty_and_missing_logs(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite"
    code, _, err = gpuctl("audit", "list", "--audit", str(missing))
    assert code == EXIT_ERROR and "no audit log at" in err and not missing.exists()

    empty = tmp_path / "empty.sqlite"

    async def create() -> None:
        async with open_audit(str(empty)):
            pass

    asyncio.run(create())
    assert gpuctl("audit", "head", "--audit", str(empty))[1] == "0:" + "0" * 64 + "\n"
    code, out, _ = gpuctl("audit", "verify", "--audit", str(empty), "--expect-head", "0:" + "0" * 64)
    assert code == 0 and out.startswith("intact: the log is empty")


def test_location_from_environment_and_config_file(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUCTL_AUDIT", str(db))
    assert gpuctl("audit", "head")[1].startswith("12:")
    monkeypatch.delenv("GPUCTL_AUDIT")
    config = tmp_path / "gpuctl.yaml"
    config.write_text(f"audit: sqlite://{db}\n")
    assert gpuctl("audit", "head", "--config", str(config))[1].startswith("12:")
    code, _, err = gpuctl("audit", "head", "--audit", "postgresql://gpuctl:hunter2@db.example:54x/audit")
    assert code == EXIT_CONFIG and "the port is not a number" in err
    assert "postgresql://gpuctl:***@db.example:54x/audit" in err and "hunter2" not in err
    code, _, err = gpuctl("audit", "head", "--audit", "postgres://gpuctl@db.example:5432")
    assert code == EXIT_CONFIG and "names no database" in err


def test_default_location_is_the_state_directory(tmp_path: Path) -> None:
    code, _, err = gpuctl("audit", "head")
    assert code == EXIT_ERROR and f"no audit log at {tmp_path / 'state' / 'gpuctl' / 'audit.sqlite'}" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--since", "soon"], "--since: 'soon' is not a duration"),
        (["--limit", "0"], "is not a positive whole number"),
    ],
)
def test_bad_list_arguments(db: Path, args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gpuctl("audit", "list", "--audit", str(db), *args)
    assert code == EXIT_CONFIG
    assert needle in err + capsys.readouterr().err


def test_interrupted_and_system_records_read_well(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"

    async def write() -> None:
        async with open_audit(str(path)) as log:
            await log.append(AuditEvent(run_id="mig-1", kind=EventKind.EXECUTION_STARTED))
            await log.append(AuditEvent(run_id="mig-1", kind=EventKind.INTERRUPTED, payload={"last_seq": 1}))

    asyncio.run(write())
    code, out, _ = gpuctl("audit", "show", "mig-1", "--audit", str(path))
    assert code == 0 and "state: interrupted (ended)" in out and "started by gpuctl" in out


def test_show_an_engine_api_call_with_its_step_and_identity(tmp_path: Path) -> None:
    """The engine's api_call payload is the ApiCall's dump plus the step it belongs to."""
    from gpuctl.audit import ApiCall
    from gpuctl.identity import Identity

    path = tmp_path / "audit.sqlite"
    call = ApiCall(method="PATCH", path="/api/v1/namespaces/team-a/resourcequotas/gpus", status=403, audit_id="a-1",
                   acting_as=Identity(user="user-a", groups=("team-a",)), dry_run=False, reason="Forbidden",
                   message="resourcequotas \"gpus\" is forbidden")  # fmt: skip

    async def write() -> None:
        async with open_audit(str(path)) as log:
            await log.append(AuditEvent(run_id="q-1", kind=EventKind.API_CALL, payload={**call.model_dump(mode="json"), "step": 2}))

    asyncio.run(write())
    code, out, _ = gpuctl("audit", "show", "q-1", "--audit", str(path))
    assert code == 0
    assert out.splitlines()[5:] == [
        "       PATCH /api/v1/namespaces/team-a/resourcequotas/gpus → 403 audit-id a-1",
        "       acting_as:",
        "         groups:",
        "         - team-a",
        "         user: user-a",
        "       result:",
        "         message: resourcequotas \"gpus\" is forbidden",
        "         reason: Forbidden",
        "       step: 2",
    ]
    code, out, _ = gpuctl("audit", "list", "--audit", str(path))
    assert out.splitlines()[1].endswith("PATCH /api/v1/namespaces/team-a/resourcequotas/gpus → 403")
