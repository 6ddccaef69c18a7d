"""What the bot does with one `/gpu` command or one button click, independent of Slack's transport.

    parse → (help and bad input answered at once) → who is asking (identity map)
    → may they see? (gpuctl policy `may_view`) → answer from the live snapshot,
    or hand `run`/`runs`/`audit`/Approve/Deny to the engine seam.

Unmapped users never reach the seam to act: they get a refusal that says how
to get mapped. Every failure becomes a short message; an unexpected one is
logged with a reference the user can quote, never shown as a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Protocol

from gpuctl.bot import commands as cmd
from gpuctl.bot.answers import answer
from gpuctl.bot.blocks import Reply, esc, notice
from gpuctl.bot.doctor_reply import doctor_reply
from gpuctl.bot.engine_seam import EngineSeam, EngineUnavailable
from gpuctl.bot.identity import IdentityResolver
from gpuctl.bot.quick import Answer, Outcome, quick_answer
from gpuctl.bot.recent import Recent
from gpuctl.doctor.findings import Report
from gpuctl.doctor.options import DoctorOptions
from gpuctl.errors import GpuctlError
from gpuctl.identity import Identity, Requester
from gpuctl.model import Snapshot
from gpuctl.playbooks.policy import Policy, may_view
from gpuctl.query.fleet import FleetIndex
from gpuctl.render.summary import health_lines
from gpuctl.service import Cluster

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asker:
    """Who sent a request, as Slack names them."""

    user_id: str
    team_id: str = ""

    def requester(self, identity: Identity) -> Requester:
        return Requester(identity=identity, via="slack", detail=f"slack:{self.team_id}/{self.user_id}")


class View(Protocol):
    async def current(self) -> tuple[Snapshot, FleetIndex] | None: ...

    async def waiting_for(self) -> str: ...

    async def doctor(self, options: DoctorOptions) -> Report | None: ...


class LiveView:
    """The cluster's latest published snapshot and its FleetIndex, built once per snapshot (not once per request).

    The snapshot is the one the hub published last (the hub joins at its own
    pace), not a fresh join at request time: at 10,000 pods a join takes
    seconds, and a request must never be the one that runs it on the event
    loop. The index is built in a worker thread for the same reason."""

    DOCTOR_FRESH_S = 30.0  # one examination answers every `/gpu doctor` with these options for this long

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._indexed: tuple[Snapshot, FleetIndex] | None = None
        self._lock = asyncio.Lock()
        self._doctor: Recent[DoctorOptions, Report] = Recent(self.DOCTOR_FRESH_S)

    async def waiting_for(self) -> str:
        """While there is no data: what the sources say (e.g. the API server refusing connections, next retry)."""
        return " · ".join(health_lines(await self._latest()))

    async def _latest(self) -> Snapshot:
        """The hub's last published snapshot; before its first publish, a join (in the worker thread)."""
        latest = self.cluster.hub.latest
        return latest.snapshot if latest is not None else await self.cluster.current()

    async def current(self) -> tuple[Snapshot, FleetIndex] | None:
        """None until the first lists (and first metrics) are in."""
        if not self.cluster.ready and not self.cluster.crashed:
            return None
        snap = await self._latest()
        async with self._lock:
            if self._indexed is None or self._indexed[0] is not snap:
                self._indexed = (snap, await asyncio.to_thread(FleetIndex, snap))
            return self._indexed

    async def doctor(self, options: DoctorOptions) -> Report | None:
        """`gpuctl doctor` on the live cluster (its snapshot plus one-shot reads); None until it is ready.

        Shared: askers within DOCTOR_FRESH_S get the same examination (its report says when it was taken)."""
        if not self.cluster.ready:
            return None
        from gpuctl.doctor.run import examine_live

        return await self._doctor.get(options, lambda: examine_live(self.cluster, options))


class Replies:
    """Replies to read-only commands for one snapshot: each computed once, in a worker thread.

    A burst of `/gpu status` from an on-call channel is one computation, and
    fewer threads compete with the event loop (which acks) for the GIL."""

    MAX = 256  # distinct commands remembered per snapshot

    def __init__(self) -> None:
        self._snap: Snapshot | None = None
        self._replies: dict[cmd.Command, asyncio.Future[Reply]] = {}

    async def get(self, command: cmd.Command, snap: Snapshot, index: FleetIndex) -> Reply:
        if snap is not self._snap:
            self._snap, self._replies = snap, {}
        reply = self._replies.get(command)
        if reply is None:
            reply = asyncio.ensure_future(asyncio.to_thread(answer, command, snap, index))
            if len(self._replies) < self.MAX:
                self._replies[command] = reply
        return await asyncio.shield(reply)  # a cancelled asker leaves it computing for the others


class Desk:
    def __init__(self, *, view: View, resolver: IdentityResolver, policy: Policy, seam: EngineSeam) -> None:
        self.view = view
        self.resolver = resolver
        self.policy = policy
        self.seam = seam
        self.replies = Replies()

    async def command(self, asker: Asker, text: str, *, key: str) -> Answer:
        """The answer to `/gpu <text>`; `key` identifies this request (idempotency key for a run)."""
        parsed = cmd.parse(text)
        quick = quick_answer(parsed)
        if quick is not None:
            return quick
        assert not isinstance(parsed, cmd.Problem | cmd.Help)
        verb = cmd.verb_of(parsed)
        try:
            reply, outcome = await self._command(asker, parsed, key)
        except EngineUnavailable as e:
            reply, outcome = notice("Playbooks not available yet", esc(e)), "unavailable"
        except GpuctlError as e:
            reply, outcome = notice("Could not answer", esc(e)), "error"
        except Exception:
            reply, outcome = _unexpected(f"/gpu {verb}"), "error"
        return Answer(reply, outcome, verb)

    async def _command(self, asker: Asker, parsed: cmd.Command, key: str) -> tuple[Reply, Outcome]:
        identity = await self.resolver.resolve(asker.user_id)
        viewer = identity or Identity(user=f"unmapped:{asker.user_id}")
        decision = may_view(self.policy, viewer)
        if not decision.allowed:
            return _not_allowed(asker, identity, decision.reason), "denied"
        if isinstance(parsed, cmd.READ_ONLY):
            current = await self.view.current()
            if current is None:
                return await self._no_data(), "unavailable"
            # In a worker thread, like the index: a big fleet's answer must not hold up other requests' acks.
            return await self.replies.get(parsed, *current), "ok"
        if isinstance(parsed, cmd.Doctor):
            report = await self.view.doctor(DoctorOptions(namespace=parsed.namespace))
            if report is None:
                return await self._no_data(), "unavailable"
            return doctor_reply(report, parsed.namespace), "ok"
        if isinstance(parsed, cmd.Run):
            if identity is None:
                return _cannot_act(asker, "run playbooks"), "denied"
            return await self.seam.run(asker.requester(identity), parsed, key=key), "ok"
        if isinstance(parsed, cmd.Runs):
            return await self.seam.runs(viewer), "ok"
        if isinstance(parsed, cmd.Audit):
            return await self.seam.audit(viewer, parsed.run), "ok"
        raise AssertionError(f"unhandled command {parsed!r}")

    async def _no_data(self) -> Reply:
        body = f"gpuctl is still reading the cluster; try again in a few seconds.\n{esc(await self.view.waiting_for())}"
        return notice("No data yet", body)

    async def review(self, asker: Asker, run_id: str, *, approve: bool) -> Answer:
        """An Approve or Deny click on `run_id`, as the clicker's mapped identity."""
        verb = "approve" if approve else "deny"
        try:
            identity = await self.resolver.resolve(asker.user_id)
            if identity is None:
                return Answer(_cannot_act(asker, f"{verb} runs"), "denied", verb)
            return Answer(await self.seam.review(asker.requester(identity), run_id, approve=approve), "ok", verb)
        except EngineUnavailable as e:
            return Answer(notice(f"Could not {verb} yet", esc(e)), "unavailable", verb)
        except GpuctlError as e:
            return Answer(notice(f"Could not {verb}", esc(e)), "error", verb)
        except Exception:
            return Answer(_unexpected(verb), "error", verb)

    async def follow(self, run_id: str) -> Reply | None:
        """After an approval: the run's end when it comes (None: nothing to report, or another click follows it)."""
        try:
            return await self.seam.follow(run_id)
        except GpuctlError as e:
            return notice(f"Lost track of run {esc(run_id)}", esc(e), hint=f"`/gpu audit {run_id}`")
        except Exception:
            return _unexpected("follow")


def _unexpected(what: str) -> Reply:
    ref = secrets.token_hex(4)
    log.exception("%s failed (ref %s)", what, ref)
    return notice("Something went wrong", f"gpuctl could not answer and logged the error as ref `{ref}`; tell its operators.")


def _not_allowed(asker: Asker, identity: Identity | None, reason: str) -> Reply:
    if identity is None:
        body = (f"Your Slack account ({esc(asker.user_id)}) is not mapped to a Kubernetes user, and the gpuctl policy "
                "lets unmapped users see nothing.")  # fmt: skip
    else:
        body = esc(reason) + "."
    return notice("Not allowed", body, hint="ask a gpuctl admin to add you to the identity map or a policy role")


def _cannot_act(asker: Asker, what: str) -> Reply:
    return notice(
        "Not allowed",
        f"Your Slack account ({esc(asker.user_id)}) is not mapped to a Kubernetes user: unmapped users can never {what}.",
        hint="ask a gpuctl admin to add you to the identity map",
    )
