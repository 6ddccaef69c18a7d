"""`gpuctl top` runs playbooks against the real test bed: pilot tests that drive the TUI's screens and
check the cluster and the audit log afterwards.

The app is shown a fixed picture (a QueueFeed with the test's namespaces); everything the screens do
goes through the real engine (`open_engine` on the test bed, as testbed-admin acting for user-a or
user-b, the policy in engine_support): the access checks (gpuctl policy, then SelfSubjectAccessReviews),
the plan, the submission, approval by another identity, execution, undo. The playbooks' logic is
engine_support's QuotaLogic (adjust-quota on namespace ResourceQuotas)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from test_playbooks_cli import IdleGpuExporter, idle_pod
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Select, Static

from gpuctl.clock import utcnow
from gpuctl.config import Settings
from gpuctl.identity import Identity
from gpuctl.model import Changes, MetricsHealth, NamespaceUsage, Snapshot, Update, WatchHealth
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.service import open_engine
from gpuctl.service import Cluster
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from gpuctl.tui.playbooks.actions_screen import ActionsScreen
from gpuctl.tui.playbooks.audit_screen import AuditScreen
from gpuctl.tui.playbooks.identity_screen import IdentityScreen
from gpuctl.tui.playbooks.plan_screen import PlanScreen
from gpuctl.tui.playbooks.progress_screen import ProgressScreen
from gpuctl.tui.playbooks.runs_screen import RunsScreen
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.service_feed import cluster_feed
from testbed.controlplane import ADMIN, ControlPlane
from testbed.kube import RestClient
from testbed.monitoring import Monitoring, ScrapeJob
from testbed.objects import unique
from testbed.waiting import poll
from tests.integration.engine_support import (
    APPROVED,
    NOW,
    USER_A,
    USER_B,
    audit_intact,
    engine_at,
    hard,
    kinds,
    reclaim_now,
    records,
    registry,
    settings,
    team_namespace,
)
from tests.tui.conftest import until, wait_applied

pytestmark = pytest.mark.testbed
SIZE = (140, 40)


def picture(*namespaces: str) -> Update:
    snapshot = Snapshot(
        taken_at=utcnow(), idle_threshold_pct=5, idle_window_s=1800,
        metrics=MetricsHealth(source="none"), watch=WatchHealth(source="none"),
        namespaces=tuple(NamespaceUsage(name=ns, gpu_quota_hard=4, gpu_quota_used=0) for ns in namespaces),
    )  # fmt: skip
    return Update(snapshot=snapshot, changes=Changes(everything=True))


def opener(settings: Settings, cluster: Cluster | None) -> AbstractAsyncContextManager[Engine]:
    return open_engine(settings, registry=registry(), cluster=cluster, host="tui-test", lock_wait_s=1.0)


def app_as(config: Settings, who: Identity, *namespaces: str) -> GpuctlApp:
    return GpuctlApp(QueueFeed([picture(*namespaces)]), settings=config, open_engine=opener, act_as=who)


async def actions(pilot: Pilot) -> ActionsScreen:
    """`a` on the quotas view's row under the cursor; the screen once the engine has answered."""
    await pilot.press("4")
    await pilot.pause()
    await pilot.press("a")
    await until(pilot, lambda: isinstance(pilot.app.screen, ActionsScreen) and pilot.app.screen.answered,
                "the playbooks and the engine's answers", timeout_s=60)  # fmt: skip
    screen = pilot.app.screen
    assert isinstance(screen, ActionsScreen)
    return screen


def reasons(screen: ActionsScreen) -> dict[str, str | None]:
    return {c.offer.playbook: c.denied or c.offer.unavailable for c in screen.checked}


async def choose(pilot: Pilot, screen: ActionsScreen, playbook: str) -> PlanScreen:
    options = screen.query_one(OptionList)
    options.highlighted = next(i for i, c in enumerate(screen.checked) if c.offer.playbook == playbook)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, PlanScreen), "the plan screen")
    plan_screen = pilot.app.screen
    assert isinstance(plan_screen, PlanScreen)
    await until(pilot, lambda: plan_screen.plan is not None and not plan_screen.busy, "the first plan", timeout_s=60)
    return plan_screen


async def replan(pilot: Pilot, screen: PlanScreen, quota: str) -> None:
    screen.query_one("#param-quota", Input).value = quota
    await pilot.pause()
    assert screen.plan is None  # the plan shown no longer matches the form: it is withdrawn
    await pilot.press("ctrl+p")
    await until(pilot, lambda: screen.plan is not None and not screen.busy, "the new plan", timeout_s=60)


async def progress(pilot: Pilot, phase: str, *, ended: bool = False) -> ProgressScreen:
    """The progress screen once its run is `phase` (`ended`: and this process's execution has returned)."""

    def there() -> bool:
        screen = pilot.app.screen
        return isinstance(screen, ProgressScreen) and screen.phase == phase and (not ended or screen.outcome is not None)

    await until(pilot, there, f"the run to be {phase}", timeout_s=60)
    screen = pilot.app.screen
    assert isinstance(screen, ProgressScreen)
    return screen


@pytest.fixture
def home(tmp_path: Path, control_plane: ControlPlane, engine_home: str) -> Settings:
    return settings(control_plane.kubeconfig(ADMIN), tmp_path, engine_home)


async def test_greyed_out_with_the_reason_then_plan_confirm_progress_result_and_undo(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path, home: Settings
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")
    app = app_as(home, USER_A.identity, team_a)
    async with app.run_test(size=SIZE) as pilot:
        await wait_applied(pilot)
        screen = await actions(pilot)
        found = reasons(screen)
        # Offered, not hidden: user-a's role covers reclaim in eng-a-*, but the cluster says no to evictions there.
        assert found[APPROVED] is None and found[NOW] is None
        assert found["reclaim-idle-gpus"] is not None
        assert found["reclaim-idle-gpus"].startswith("the cluster (SelfSubjectAccessReview): user-a (team-a) may not")
        plan_screen = await choose(pilot, screen, NOW)
        assert plan_screen.plan is not None and plan_screen.plan.parameters["quota"] == 4  # the quota it has now
        await replan(pilot, plan_screen, "6")
        assert await hard(admin, team_a) == "4"  # planned, dry-run: nothing changed before ctrl+y
        await pilot.press("ctrl+y")
        done = await progress(pilot, "Succeeded", ended=True)
        assert done.outcome is not None and done.outcome.ok
        assert await hard(admin, team_a) == "6"
        run_id = done.run_id
        await until(pilot, lambda: bool(done.records) and done.records[-1].kind.value == "completed", "the log's end")
        # Undo from the result: a new run that puts 4 back.
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.run_id != run_id, "the undo run")
        undo = await progress(pilot, "Succeeded", ended=True)
        assert await hard(admin, team_a) == "4"
        # The audit view: both runs, filterable, the chain verified.
        await pilot.press("L")
        await until(pilot, lambda: app_is(pilot, AuditScreen) and any(r.run_id == undo.run_id for r in app.screen.records),
                    "the audit view to list the undo", timeout_s=30)  # fmt: skip
        audit = app.screen
        assert isinstance(audit, AuditScreen)
        await until(pilot, lambda: str(audit.query_one("#audit-verdict", Static).render()).startswith("intact:"),
                    "the chain verified")  # fmt: skip
        audit.query_one("#audit-filter", Input).value = f"{undo.run_id} completed"
        await pilot.pause()
        shown = [audit.records_by_seq[k] for k in audit.query_one(RowTable).shown_keys]
        assert [(r.run_id, r.kind.value) for r in shown] == [(undo.run_id, "completed")]
    assert "completed" in kinds(await records(tmp_path, run_id))
    assert kinds(await records(tmp_path, run_id))[-1] == "undone"
    assert "completed" in kinds(await records(tmp_path, undo.run_id))


async def test_another_teams_namespace_is_greyed_out_by_the_policy(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path, home: Settings
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")
    async with app_as(home, USER_B.identity, team_a).run_test(size=SIZE) as pilot:
        await wait_applied(pilot)
        screen = await actions(pilot)
        reason = reasons(screen)[APPROVED]
        assert reason is not None and reason.startswith("gpuctl policy: user-b may not run adjust-quota on")
        assert "team-b-operator covers eng-b-* only" in reason
        options = screen.query_one(OptionList)
        assert all(options.get_option_at_index(i).disabled for i in range(options.option_count))
        await pilot.press("enter")  # nothing to choose: the screen stays
        assert app_is(pilot, ActionsScreen)


def app_is(pilot: Pilot, kind: type) -> bool:
    return isinstance(pilot.app.screen, kind)


async def test_submitted_for_approval_approved_by_another_identity_then_executed(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path, home: Settings
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")
    # user-a plans and submits: the run waits, saying who may approve.
    async with app_as(home, USER_A.identity, team_a).run_test(size=SIZE) as pilot:
        await wait_applied(pilot)
        plan_screen = await choose(pilot, await actions(pilot), APPROVED)
        await replan(pilot, plan_screen, "7")
        await pilot.press("ctrl+y")
        waiting = await progress(pilot, "AwaitingApproval")
        assert waiting.submitted is not None
        assert any("team-b-approver" in who for who in waiting.submitted.approvers)
        run_id = waiting.run_id
    assert await hard(admin, team_a) == "4"
    # user-b approves it from the runs view.
    async with app_as(home, USER_B.identity, team_a).run_test(size=SIZE) as pilot:
        await wait_applied(pilot)
        await pilot.press("R")
        await until(pilot, lambda: app_is(pilot, RunsScreen) and run_id in pilot.app.screen.runs, "the run listed", timeout_s=60)
        runs = pilot.app.screen
        assert isinstance(runs, RunsScreen)
        runs.query_one("#runs-table").cursor_key = run_id
        await pilot.press("y")
        await until(pilot, lambda: runs.runs[run_id].status.phase == "Approved", "the approval", timeout_s=30)
    # user-a executes the approved run from the runs view.
    async with app_as(home, USER_A.identity, team_a).run_test(size=SIZE) as pilot:
        await wait_applied(pilot)
        await pilot.press("R")
        await until(pilot, lambda: app_is(pilot, RunsScreen) and run_id in pilot.app.screen.runs, "the run listed", timeout_s=60)
        pilot.app.screen.query_one("#runs-table").cursor_key = run_id
        await pilot.press("enter")
        await progress(pilot, "Approved")
        await pilot.press("e")
        done = await progress(pilot, "Succeeded", ended=True)
        assert done.outcome is not None and done.outcome.ok
    assert await hard(admin, team_a) == "7"
    assert {"approved", "completed"} <= set(kinds(await records(tmp_path, run_id)))


async def test_reclaim_an_idle_pod_from_the_pods_view_evicts_it_and_lands_in_the_audit_log(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    """The whole thing as `gpuctl top` runs it: the live cluster feed (Kubernetes and a Prometheus scraping an
    idle GPU), the engine opened on that running cluster, the real reclaim logic, and the pod really evicted."""
    namespace = unique("eng-a-tui")
    labels = await idle_pod(admin, namespace, unique("tui-reclaim"))
    key = f"{namespace}/idle-0"
    async with IdleGpuExporter(**labels) as exporter:
        async with Monitoring(tmp_path / "prometheus", jobs=[ScrapeJob("dcgm-exporter", [exporter.url])]) as monitoring:
            config = settings(control_plane.kubeconfig(ADMIN), tmp_path, engine_home,
                              prometheus_url=monitoring.prometheus_url, idle_window_s=5, refresh_s=1)  # fmt: skip
            reclaim_now(tmp_path)
            app = GpuctlApp(settings=config, open_feed=cluster_feed, act_as=USER_A.identity)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: app.index is not None and key in app.index.pods and app.index.pods[key].idle,
                            "idle-0 shown idle", timeout_s=90)  # fmt: skip
                await pilot.press("3")
                table: RowTable = app.query_one("#pods-table", RowTable)
                table.cursor_key = key
                await pilot.press("space")
                assert table.marked == {key}
                await pilot.press("a")
                await until(pilot, lambda: app_is(pilot, ActionsScreen) and app.screen.answered, "the engine's answers",
                            timeout_s=60)  # fmt: skip
                screen = app.screen
                assert isinstance(screen, ActionsScreen)
                assert reasons(screen)["reclaim-idle-gpus-now"] is None
                plan_screen = await choose(pilot, screen, "reclaim-idle-gpus-now")
                assert plan_screen.offer.params["pods"] == key and plan_screen.offer.params["max_pods"] == "1"
                plan_screen.query_one("#param-mode", Select).value = "immediate"
                await pilot.press("ctrl+p")
                await until(pilot, lambda: plan_screen.plan is not None and not plan_screen.busy, "the plan", timeout_s=60)
                assert plan_screen.plan is not None
                assert [s.target.key for s in plan_screen.plan.steps if s.action == "evict_pods"] == [f"Pod/{key}"]
                await pilot.press("ctrl+y")
                done = await progress(pilot, "Succeeded", ended=True)
                assert done.outcome is not None and done.outcome.ok, done.outcome
                run_id = done.run_id
    await poll(lambda: admin.get("Pod", "idle-0", namespace), lambda r: r.status == 404, what="idle-0 to be gone")
    found = await records(tmp_path, run_id)
    assert kinds(found)[-1] == "completed"
    assert any(r.kind.value == "api_call" and str(r.payload.get("path", "")).endswith("/pods/idle-0/eviction")
               and r.payload.get("status") == 201 for r in found)  # fmt: skip
    await audit_intact(tmp_path)


async def test_approve_as_someone_the_policy_lets_you_act_for_from_the_runs_view(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path, home: Settings
) -> None:
    """`Y`: the CLI's `--as` for an approval. testbed-admin (the kubeconfig) may act for user-* in team-*
    groups (the policy's platform role), so user-a's TUI approves as user-b; as mallory, the policy says no."""
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")
        k = f"tui:{unique('approve-as')}"
        plan = await engine.plan(USER_A, APPROVED, {"namespace": team_a, "quota": "5"}, key=k)
        run_id = (await engine.submit(plan, key=k)).run_id
    async with app_as(home, USER_A.identity, team_a).run_test(size=SIZE) as pilot:
        await wait_applied(pilot)
        await pilot.press("R")
        await until(pilot, lambda: app_is(pilot, RunsScreen) and run_id in pilot.app.screen.runs, "the run listed", timeout_s=60)
        runs = pilot.app.screen
        assert isinstance(runs, RunsScreen)
        runs.query_one("#runs-table", RowTable).cursor_key = run_id
        await pilot.press("y")  # one's own run: refused, with the reason
        await until(pilot, lambda: any("their own run" in n.message for n in pilot.app._notifications), "the refusal")
        for who, said, phase in (
            ("mallory", "may not act as mallory", "AwaitingApproval"),  # the policy's act_as says no: unchanged
            ("user-b team-b", "is Approved now", "Approved"),
        ):
            await pilot.press("Y")
            await until(pilot, lambda: app_is(pilot, IdentityScreen), "the identity prompt")
            await pilot.press(*who, "enter")
            await until(pilot, lambda: any(said in n.message for n in pilot.app._notifications), f"{said!r}", timeout_s=30)
            assert runs.runs[run_id].status.phase == phase
        approval = runs.runs[run_id].status.approvals[-1]
        assert (approval.user, approval.via) == ("user-b", "tui")


async def test_quitting_while_a_run_executes_asks_first(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path, home: Settings
) -> None:
    """The run is held before its first write (QuotaLogic's gate): `q` warns and keeps the app; once the run
    has ended, `q` quits."""
    release = asyncio.Event()

    async def gate(step: int) -> None:
        await release.wait()

    def held(settings: Settings, cluster: Cluster | None) -> AbstractAsyncContextManager[Engine]:
        return open_engine(settings, registry=registry(gate), cluster=cluster, host="tui-test", lock_wait_s=1.0)

    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")
    app = GpuctlApp(QueueFeed([picture(team_a)]), settings=home, open_engine=held, act_as=USER_A.identity)
    async with app.run_test(size=SIZE) as pilot:
        await wait_applied(pilot)
        plan_screen = await choose(pilot, await actions(pilot), NOW)
        await replan(pilot, plan_screen, "3")
        await pilot.press("ctrl+y")
        running = await progress(pilot, "Running")
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running and app.screen is running
        assert any("q again quits anyway" in n.message for n in app._notifications)
        release.set()
        await progress(pilot, "Succeeded", ended=True)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, "the app to quit")
    assert await hard(admin, team_a) == "3"
