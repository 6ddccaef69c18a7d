"""`gpuctl top --demo` acts: the whole flow against the simulated fleet, no cluster needed.

The real app on the real demo feed (`cluster_feed` over `--demo` settings) and the real engine
(`open_engine(settings, cluster=the feed's cluster)`: the simulated API over the same world), driven
key by key as a newcomer would: reclaim the idle notebooks, relabel a MIG node and adjust a quota and
undo it (each approved by the demo's lead through the policy's act_as), see the fleet follow; and a
playbook the policy does not allow greyed out with the reason."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Select

from gpuctl.config import Settings
from gpuctl.identity import Identity
from gpuctl.sim.api.access import DEMO_LEAD
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.playbooks.actions_screen import ActionsScreen
from gpuctl.tui.playbooks.identity_screen import IdentityScreen
from gpuctl.tui.playbooks.plan_screen import PlanScreen
from gpuctl.tui.playbooks.progress_screen import ProgressScreen
from gpuctl.tui.playbooks.runs_screen import RunsScreen
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.service_feed import cluster_feed
from gpuctl.tui.status_bar import StatusBar
from tests.tui.conftest import until, wait_applied

SIZE = (140, 40)


# Waits on the demo engine (plans, submissions, approvals, executions): seconds of work on a busy machine.
ENGINE_S = 30


def demo_app(tmp_path: Path, *, act_as: Identity | None = None) -> GpuctlApp:
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    settings = Settings(config_file=config, demo=True, refresh_s=1.0, audit=str(tmp_path / "audit.sqlite"))
    return GpuctlApp(settings=settings, open_feed=cluster_feed, act_as=act_as)


async def demo_on_screen(pilot: Pilot) -> None:
    """The demo's first picture with its records and readings: the app's first update may come before them."""
    app = pilot.app
    assert isinstance(app, GpuctlApp)

    def shown() -> bool:
        index = app.index
        return index is not None and bool(index.snapshot.pods) and index.snapshot.metrics.last_success is not None

    await wait_applied(pilot)
    await until(pilot, shown, "the demo's pods and readings on screen")


async def plan_for(pilot: Pilot, playbook: str) -> PlanScreen:
    """`a`, then enter on `playbook` once the engine has said it may run; the plan screen with its first plan."""
    app = pilot.app
    await pilot.press("a")
    await until(pilot, lambda: isinstance(app.screen, ActionsScreen) and app.screen.answered, "the playbooks", timeout_s=ENGINE_S)
    actions = app.screen
    assert isinstance(actions, ActionsScreen)
    index = next(i for i, c in enumerate(actions.checked) if c.offer.playbook == playbook)
    assert actions.checked[index].usable, actions.checked[index]
    actions.query_one(OptionList).highlighted = index
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, PlanScreen) and app.screen.plan is not None and not app.screen.busy,
                "the plan", timeout_s=ENGINE_S)  # fmt: skip
    screen = app.screen
    assert isinstance(screen, PlanScreen)
    return screen


async def replan(pilot: Pilot, screen: PlanScreen, **choices: str) -> None:
    for name, value in choices.items():
        screen.query_one(f"#param-{name}", Select).value = value
    await pilot.pause()
    await pilot.press("ctrl+p")
    await until(pilot, lambda: screen.plan is not None and not screen.busy, "the new plan", timeout_s=ENGINE_S)
    assert screen.plan is not None and screen.plan.runnable, screen.plan


async def ended(pilot: Pilot, phase: str = "Succeeded") -> ProgressScreen:
    def there() -> bool:
        screen = pilot.app.screen
        return isinstance(screen, ProgressScreen) and screen.outcome is not None

    await until(pilot, there, "the run's outcome", timeout_s=60)
    screen = pilot.app.screen
    assert isinstance(screen, ProgressScreen) and screen.outcome is not None
    assert screen.outcome.phase == phase, screen.outcome
    return screen


async def approve_and_execute(pilot: Pilot, run_id: str) -> ProgressScreen:
    """From the run's progress screen awaiting approval: the lead approves in the runs view (Y, as demo-lead),
    the requester opens the run and executes it (e); the progress screen once it has ended."""
    app = pilot.app
    await pilot.press("R")
    await until(pilot, lambda: isinstance(app.screen, RunsScreen) and run_id in app.screen.runs, "the run listed", timeout_s=ENGINE_S)
    runs = app.screen
    assert isinstance(runs, RunsScreen)
    runs.query_one("#runs-table", RowTable).cursor_key = run_id
    await pilot.press("Y")
    await until(pilot, lambda: isinstance(app.screen, IdentityScreen), "the identity prompt", timeout_s=ENGINE_S)
    await pilot.press(*f"{DEMO_LEAD.user} {DEMO_LEAD.groups[0]}", "enter")
    await until(pilot, lambda: runs.runs[run_id].status.phase == "Approved", "the approval", timeout_s=ENGINE_S)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.phase == "Approved", "the run", timeout_s=ENGINE_S)
    await pilot.press("e")
    return await ended(pilot)


async def test_reclaim_the_idle_notebooks_in_the_demo(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await demo_on_screen(pilot)
        assert app.index is not None
        idle = sorted(p.key for p in app.index.snapshot.pods if p.idle and p.namespace == "sandbox")
        assert idle
        await pilot.press("3")
        table: RowTable = app.query_one("#pods-table", RowTable)
        for key in idle:
            table.cursor_key = key
            await pilot.press("space")
        assert table.marked == set(idle)
        screen = await plan_for(pilot, "reclaim-idle-gpus")
        assert screen.offer.params["pods"] == ",".join(idle)
        await replan(pilot, screen, mode="immediate")
        assert screen.plan is not None
        assert sorted(s.target.key.removeprefix("Pod/") for s in screen.plan.steps if s.action == "evict_pods") == idle
        await pilot.press("ctrl+y")
        done = await ended(pilot)
        assert done.records and done.records[-1].kind.value == "completed"
        await until(pilot, lambda: app.index is not None and not set(idle) & set(app.index.pods), "the notebooks gone")


async def test_two_marked_pods_plan_exactly_those_two_and_the_status_bar_counts_them(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await demo_on_screen(pilot)
        assert app.index is not None
        idle = sorted(p.key for p in app.index.snapshot.pods if p.idle)
        assert len(idle) > 2  # other idle pods the playbook alone would also take
        await pilot.press("3")
        table: RowTable = app.query_one("#pods-table", RowTable)
        for key in idle[:2]:
            table.cursor_key = key
            await pilot.press("space")
        status = app.query_one("#status", StatusBar)
        await until(pilot, lambda: " 2 marked " in str(status.render()), "2 marked in the status bar")
        screen = await plan_for(pilot, "reclaim-idle-gpus")
        assert screen.offer.params["pods"] == ",".join(idle[:2])
        await replan(pilot, screen, mode="immediate")
        assert screen.plan is not None
        assert sorted(s.target.key.removeprefix("Pod/") for s in screen.plan.steps if s.action == "evict_pods") == idle[:2]
        assert not screen.plan.skipped  # both marked pods are reclaimable: nothing left out, nothing added


async def test_relabel_a_mig_node_approved_by_the_lead_in_the_demo(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await demo_on_screen(pilot)
        assert app.index is not None
        node = min((n for n in app.index.snapshot.nodes if n.pool == "a100-train" and n.mig_config == "all-disabled"),
                   key=lambda n: (len(app.index.pods_by_node.get(n.name, [])), n.name))  # fmt: skip
        await pilot.press("2")
        app.query_one("#nodes-table", RowTable).cursor_key = node.name
        screen = await plan_for(pilot, "relabel-mig")
        assert screen.offer.params == {"node": node.name, "profile": "all-balanced"}
        await replan(pilot, screen, drain="true")
        await pilot.press("ctrl+y")
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.phase == "AwaitingApproval",
                    "the run awaiting approval", timeout_s=ENGINE_S)  # fmt: skip
        waiting = app.screen
        assert isinstance(waiting, ProgressScreen) and waiting.submitted is not None
        assert any("demo-lead" in who for who in waiting.submitted.approvers)
        await approve_and_execute(pilot, waiting.run_id)

        def relabelled() -> bool:
            now = app.index.nodes.get(node.name) if app.index else None
            return now is not None and now.mig_config == "all-balanced" and now.mig_config_state == "success"

        await until(pilot, relabelled, f"{node.name} on all-balanced, the MIG manager done", timeout_s=ENGINE_S)


async def test_adjust_a_quota_and_undo_it_in_the_demo(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await demo_on_screen(pilot)
        assert app.index is not None
        before = app.index.namespaces["team-a"].gpu_quota_hard
        assert before is not None
        await pilot.press("4")
        app.query_one("#quotas-table", RowTable).cursor_key = "team-a"
        screen = await plan_for(pilot, "adjust-quota")
        assert screen.offer.params == {"namespace": "team-a", "quota": str(int(before))}
        screen.query_one("#param-quota", Input).value = str(int(before) + 6)
        await pilot.pause()
        await pilot.press("ctrl+p")
        await until(pilot, lambda: screen.plan is not None and not screen.busy, "the new plan", timeout_s=ENGINE_S)
        await pilot.press("ctrl+y")
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.phase == "AwaitingApproval",
                    "the run awaiting approval", timeout_s=ENGINE_S)  # fmt: skip
        run_id = app.screen.run_id
        await approve_and_execute(pilot, run_id)
        await until(pilot, lambda: app.index is not None and app.index.namespaces["team-a"].gpu_quota_hard == before + 6,
                    "the new quota shown", timeout_s=ENGINE_S)  # fmt: skip
        # Undo: a new run (it needs approval too), which puts the quota back.
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.run_id != run_id
                    and app.screen.phase == "AwaitingApproval", "the undo awaiting approval", timeout_s=ENGINE_S)  # fmt: skip
        undo = app.screen.run_id
        await approve_and_execute(pilot, undo)
        await until(pilot, lambda: app.index is not None and app.index.namespaces["team-a"].gpu_quota_hard == before,
                    "the quota back", timeout_s=ENGINE_S)  # fmt: skip


async def test_what_the_policy_does_not_allow_is_greyed_out_with_the_reason_in_the_demo(tmp_path: Path) -> None:
    """As demo-alerts (who may only reclaim), a namespace offers adjust-quota greyed out, saying why."""
    app = demo_app(tmp_path, act_as=Identity(user="demo-alerts"))
    async with app.run_test(size=SIZE) as pilot:
        await demo_on_screen(pilot)
        await pilot.press("4")
        app.query_one("#quotas-table", RowTable).cursor_key = "sandbox"
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ActionsScreen) and app.screen.answered, "the playbooks", timeout_s=ENGINE_S)
        actions = app.screen
        assert isinstance(actions, ActionsScreen)
        found = {c.offer.playbook: c for c in actions.checked}
        assert found["reclaim-idle-gpus"].usable
        assert found["adjust-quota"].denied == (
            "gpuctl policy: demo-alerts may not run adjust-quota: role demo-alerts runs reclaim-idle-gpus"
        )
        options = actions.query_one(OptionList)
        index = list(found).index("adjust-quota")
        assert options.get_option_at_index(index).disabled
