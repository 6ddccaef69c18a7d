"""Alertmanager webhooks (version "4") → one Slack post per firing episode, updated when it resolves.

Alertmanager sends the same alert many times (group_interval, repeat_interval,
retries after a 5xx), so an alert is keyed on its firing episode: fingerprint +
startsAt. The first delivery of an episode that matches an alert rule posts
the alert, the playbook it maps to with its parameters (validated; a bad label
value is shown, not run) and what the engine seam adds; every later delivery
of that episode does nothing; `resolved` marks the post resolved and says so
in its thread. If Slack refuses the post, or the playbook engine is not
connected yet, the episode is forgotten and the webhook answers 503, so
Alertmanager's retry posts it then.

An `auto` rule's run, when the seam lets it run (the policy's hourly budget;
see engine_link), is executed in the background once the post is out: the
thread says it started, then the post is replaced by the verified outcome and
the thread says how it ended.

Episodes live in memory (bounded): after a restart the next repeat of a
still-firing alert is posted once more, but never runs or proposes a second
run: the engine finds the episode's run by its idempotency key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from slack_sdk.web.async_client import AsyncWebClient

from gpuctl.bot.alert_rules import AlertRules, Rule, batch_key, batch_size, given_for, validated
from gpuctl.bot.blocks import Block, context, esc, fields, notice, section
from gpuctl.bot.engine_seam import AlertAnswer, AlertProposal, EngineSeam, EngineUnavailable
from gpuctl.errors import GpuctlError, ParameterError
from gpuctl.playbooks.loader import Catalog
from gpuctl.playbooks.policy import Policy, alert_rule

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # bytes of one webhook body
MAX_ALERTS = 1000  # alerts in one webhook body
MAX_EPISODES = 10_000
POST_WAIT_S = 30.0  # how long a resolution waits for its episode's post to finish
SHOWN_SUMMARIES = 10  # alerts proposed together: the summaries listed in the post
SHOWN_LABELS = ("severity", "Hostname", "hostname", "gpu", "namespace", "exported_namespace", "pod", "exported_pod")


class _Camel(BaseModel):
    # Unknown fields are ignored: a newer Alertmanager may add some.
    model_config = ConfigDict(frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True)


class WebhookAlert(_Camel):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=64)

    @property
    def episode(self) -> str:
        return f"{self.fingerprint}@{self.starts_at.isoformat()}"

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "?")


class WebhookPayload(_Camel):
    version: Literal["4"]
    group_key: str
    truncated_alerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict)
    common_labels: dict[str, str] = Field(default_factory=dict)
    common_annotations: dict[str, str] = Field(default_factory=dict)
    external_url: str = Field("", alias="externalURL")
    alerts: list[WebhookAlert] = Field(max_length=MAX_ALERTS)


class Rejected(Exception):
    """A webhook body gpuctl will not read: `status` is the HTTP answer, the message says why (logged)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_payload(body: bytes) -> WebhookPayload:
    """The payload in a webhook body; Rejected (400) naming the first problems when it is not one."""
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors(include_url=False)[:3]
        )
        raise Rejected(400, f"not an Alertmanager version 4 payload: {problems}"[:500]) from None


@dataclass
class Episode:
    alert: str
    channel: str
    blocks: list[Block]
    text: str
    ts: str | None = None
    resolved: bool = False
    posted: asyncio.Event = field(default_factory=asyncio.Event)
    head: int = 0  # how many of `blocks` describe the alert (the rest: what the seam said)
    resolved_note: Block | None = None  # shown above the blocks once the alert resolved
    members: frozenset[str] = frozenset()  # the episodes of the alerts this post proposes for together
    ended: set[str] = field(default_factory=set)  # those resolved so far: the post is resolved with the last

    def shown(self) -> list[Block]:
        return [self.resolved_note, *self.blocks] if self.resolved_note else list(self.blocks)


@dataclass
class Outcome:
    """What one webhook delivery did, alert by alert."""

    posted: int = 0
    repeats: int = 0
    resolved: int = 0
    unmatched: int = 0
    failed: int = 0

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if v}


class AlertDesk:
    def __init__(
        self, rules: AlertRules | None, catalog: Catalog, policy: Policy, poster: AsyncWebClient, seam: EngineSeam
    ) -> None:
        self.rules = rules
        self.catalog = catalog
        self.policy = policy
        self.poster = poster
        self.seam = seam
        self.episodes: OrderedDict[str, Episode] = OrderedDict()
        self.running: set[asyncio.Task[None]] = set()  # auto runs being executed

    async def aclose(self) -> None:
        """Cancel auto runs still executing (the engine records them as interrupted at its next start)."""
        for task in self.running:
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)

    async def handle(self, payload: WebhookPayload) -> Outcome:
        """Resolve posted episodes and note repeats in order, then post the new firing episodes: those of one
        rule that differ only in the pods they name together (one proposal for all their pods), others alone."""
        outcome = Outcome()
        fresh: dict[tuple[int, object], tuple[Rule, list[WebhookAlert]]] = {}
        for alert in payload.alerts:
            rule = self.rules.match(alert.labels) if self.rules else None
            if alert.status == "resolved":
                done = await self._resolve(alert)
                outcome.resolved += done
                outcome.repeats += not done and rule is not None
                outcome.unmatched += rule is None
            elif rule is None:
                outcome.unmatched += 1
            elif alert.episode in self.episodes:
                outcome.repeats += 1
            else:
                together = batch_key(rule, alert.labels, self.catalog) or alert.episode
                fresh.setdefault((id(rule), together), (rule, []))[1].append(alert)
        for rule, alerts in fresh.values():
            size = batch_size(rule, self.catalog)
            for start in range(0, len(alerts), size):
                batch = alerts[start : start + size]
                posted = await self._post(batch, rule)
                outcome.posted += len(batch) if posted else 0
                outcome.failed += 0 if posted else len(batch)
        return outcome

    def _remember(self, key: str, episode: Episode) -> None:
        self.episodes[key] = episode
        while len(self.episodes) > MAX_EPISODES:  # forget the oldest resolved episode, else the oldest
            oldest = next((k for k, e in self.episodes.items() if e.resolved), next(iter(self.episodes)))
            del self.episodes[oldest]

    async def _post(self, alerts: list[WebhookAlert], rule: Rule) -> bool:
        """One post (and proposal) for `alerts`: one alert, or several of one rule naming different pods."""
        assert self.rules is not None
        alert = alerts[0]
        channel = rule.channel or self.rules.channel
        members = frozenset(a.episode for a in alerts)
        episode = Episode(alert=alert.name, channel=channel, blocks=[], text="", members=members)
        for key in members:
            self._remember(key, episode)  # before the awaits: a concurrent delivery sees it
        try:
            proposal, answer = await self._describe(alerts, rule, episode)
        except EngineUnavailable as e:  # 503: Alertmanager sends it again, by when the engine may be there
            log.warning("alert %s (%s) not posted: %s", alert.name, _key(alerts), e)
            self._forget(members)
            episode.posted.set()
            return False
        blocks, text = episode.blocks, episode.text
        try:
            response = await self.poster.chat_postMessage(channel=channel, text=text, blocks=blocks)
            episode.channel, episode.ts = response["channel"], response["ts"]
        except Exception as e:  # Slack refused or is unreachable: forget it, so Alertmanager's retry posts it
            log.warning("posting alert %s (%s) to %s failed: %s", alert.name, _key(alerts), channel, e)
            self._forget(members)
            return False
        finally:
            episode.posted.set()
        if proposal is not None and answer is not None and answer.execute and answer.run_id is not None:
            task = asyncio.create_task(self._execute(episode, proposal, answer.run_id), name=f"auto-{answer.run_id}")
            self.running.add(task)
            task.add_done_callback(self.running.discard)
        return True

    def _forget(self, keys: frozenset[str]) -> None:
        for key in keys:
            self.episodes.pop(key, None)

    async def _execute(self, episode: Episode, proposal: AlertProposal, run_id: str) -> None:
        """An auto run: say so in the thread, execute it, put the verified outcome in the post and the thread."""
        await self._say(episode, f"Running `{run_id}` now as {proposal.requester.identity} (auto mode, alert {episode.alert}).")
        try:
            reply = await self.seam.execute_alert(proposal, run_id)
        except GpuctlError as e:
            reply = notice(f"Run {esc(run_id)} did not run", esc(e), hint=f"`/gpu audit {run_id}`")
        except Exception:
            log.exception("auto run %s of alert %s failed", run_id, episode.alert)
            reply = notice(f"Run {esc(run_id)} failed unexpectedly", "the error is in gpuctl's log", hint=f"`/gpu audit {run_id}`")
        episode.blocks = [*episode.blocks[: episode.head], *reply.blocks]
        try:
            assert episode.ts is not None  # executed only after the post is out
            await self.poster.chat_update(channel=episode.channel, ts=episode.ts, text=reply.text[:300], blocks=episode.shown())
        except Exception as e:
            log.warning("updating the post of auto run %s failed: %s", run_id, e)
        await self._say(episode, reply.text)

    async def _say(self, episode: Episode, text: str) -> None:
        """A line in the episode's thread (a failure is logged: the post itself stands)."""
        try:
            await self.poster.chat_postMessage(channel=episode.channel, thread_ts=episode.ts, text=text[:3000])
        except Exception as e:
            log.warning("posting in the thread of alert %s failed: %s", episode.alert, e)

    async def _describe(
        self, alerts: list[WebhookAlert], rule: Rule, episode: Episode
    ) -> tuple[AlertProposal | None, AlertAnswer | None]:
        """Fill the episode's blocks and text; the proposal and what the seam made of it (None: bad parameters)."""
        assert self.rules is not None
        alert = alerts[0]
        severity = alert.labels.get("severity")
        summaries = [a.annotations.get("summary") or a.annotations.get("description") or "" for a in alerts]
        summary = summaries[0] if len(alerts) == 1 else f"{len(alerts)} alerts, one proposal for all of their pods"
        mention = f"<!subteam^{self.rules.mention}> " if self.rules.mention else ""
        title = f"{mention}:rotating_light: *{esc(alert.name)}* firing{f' ({esc(severity)})' if severity else ''}"
        listed = "".join(f"\n• {esc(line)}" for line in summaries[:SHOWN_SUMMARIES] if len(alerts) > 1)
        more = f"\n… and {len(alerts) - SHOWN_SUMMARIES} more" if len(alerts) > SHOWN_SUMMARIES else ""
        blocks: list[Block] = [section(f"{title}\n{esc(summary)}{listed}{more}".rstrip())]
        shown = [(name, esc(value)) for name in SHOWN_LABELS
                 if (value := alert.labels.get(name)) and all(a.labels.get(name) == value for a in alerts)]  # fmt: skip
        if shown:
            blocks.append(fields(shown))
        proposal = answer = None
        given = given_for(rule, [a.labels for a in alerts], self.catalog)
        try:
            args = validated(rule, given, self.catalog)
        except ParameterError as e:
            blocks.append(section(f"Playbook `{rule.playbook}` ({rule.mode}): not proposed, {esc(e)}"))
        else:
            said = ", ".join(f"{k}={v}" for k, v in args.items() if v is not None) or "defaults"
            blocks.append(section(f"Playbook `{rule.playbook}` ({rule.mode}) with {esc(said)}"))
            policy_rule = alert_rule(self.policy, rule.playbook)
            proposal = AlertProposal(
                key=_key(alerts),
                alert=alert.name,
                playbook=rule.playbook,
                arguments=args,
                text=given,
                mode=rule.mode,
                run_as=policy_rule.run_as if policy_rule else None,
                max_runs_per_hour=policy_rule.max_runs_per_hour if policy_rule else 0,
            )
            answer = await self.seam.alert(proposal)
        prints = f"fingerprint{'s' if len(alerts) > 1 else ''} {', '.join(a.fingerprint for a in alerts[:SHOWN_SUMMARIES])}"
        blocks.append(context(esc(f"started {alert.starts_at:%Y-%m-%d %H:%M:%S}Z · {prints}")))
        episode.head = len(blocks)
        episode.blocks = [*blocks, *(answer.blocks if answer else ())]
        episode.text = f"{alert.name} firing: {summary}"[:300]
        return proposal, answer

    async def _resolve(self, alert: WebhookAlert) -> bool:
        """Mark the episode's post resolved and say so in its thread; False when there is nothing (new) to resolve."""
        episode = self.episodes.get(alert.episode)
        if episode is None or episode.resolved or alert.episode in episode.ended:
            return False
        episode.ended.add(alert.episode)
        if episode.members and not episode.ended >= episode.members:
            return True  # the post proposes for others of its alerts still firing: it stays as it is
        episode.resolved = True  # before the awaits: a concurrent repeat of the resolution does nothing
        try:
            async with asyncio.timeout(POST_WAIT_S):
                await episode.posted.wait()
        except TimeoutError:
            return False
        if episode.ts is None:
            return False  # the post failed; nothing to update
        ended = f"{alert.ends_at:%Y-%m-%d %H:%M:%S}Z" if alert.ends_at else "now"
        episode.resolved_note = section(f":white_check_mark: *{esc(alert.name)}* resolved at {ended}")
        try:
            await self.poster.chat_update(
                channel=episode.channel, ts=episode.ts, text=f"resolved: {episode.text}"[:300], blocks=episode.shown()
            )
            await self.poster.chat_postMessage(
                channel=episode.channel, thread_ts=episode.ts, text=f"{alert.name} resolved at {ended}"
            )
        except Exception as e:  # the alert is still resolved; the thread just does not say so
            log.warning("updating the post of alert %s (%s) failed: %s", alert.name, alert.episode, e)
        return True


def _key(alerts: list[WebhookAlert]) -> str:
    """The proposal's idempotency key: the episode of one alert; for several, the first episode and a digest of all."""
    if len(alerts) == 1:
        return alerts[0].episode
    episodes = sorted(a.episode for a in alerts)
    digest = hashlib.sha256("\n".join(episodes).encode()).hexdigest()[:16]
    return f"{episodes[0]}+{len(episodes) - 1}:{digest}"
