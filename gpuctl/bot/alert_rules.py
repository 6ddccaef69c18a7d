"""Which Alertmanager alerts the bot turns into playbook proposals: the alert rules file.

    channel: C0123ABCD            # where alert posts go (a channel id)
    mention: S0456EFGH            # optional: the on-call Slack user group, mentioned in each post
    rules:
      - alert: GpuIdleWhileAllocated
        labels: {severity: warning}          # optional: every one must equal the alert's label
        playbook: reclaim-idle-gpus
        params:                              # parameter: the label(s) its value comes from, first present wins
          pods: [exported_namespace/exported_pod, namespace/pod]   # a/b: two labels' values joined by '/'
        fixed: {mode: staged, idle_for: 30m} # parameter: value, the same for every alert of the rule
        mode: propose                        # propose (post the plan with buttons) or auto (run it, see below)
        channel: C0999ZZZZ                   # optional: another channel for this rule

The first rule that matches an alert applies. Checked whole at start-up
against the playbook catalog and the policy: the playbook exists, every
parameter named is one of its parameters and every fixed value is valid for
it, and `auto` needs the policy to let alerts start that playbook (its
`alerts:` entry names the identity and the hourly budget). Values taken from
labels are validated for each alert (`validate_params`), like any user input.

A label source `a/b` gives `<value of a>/<value of b>` when both are set: how an
idle-GPU alert's `namespace` and `pod` labels become reclaim-idle-gpus' `pods`
(namespace/name). Alerts of one webhook delivery that match the same rule and
differ only in such a pod-list parameter are proposed together, as one plan for
all of their pods (`batch_key`, `given_for`): "reclaim these 6 idle GPUs".

`auto` runs a playbook that needs no approval as the policy's run_as, at most
the entry's max_runs_per_hour times in a sliding hour for that playbook (all
rules starting it share the budget); beyond it, or for a playbook that needs
approval, the alert is proposed instead (gpuctl.bot.engine_link).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from gpuctl.errors import BotConfigError, FileProblem
from gpuctl.model import Frozen
from gpuctl.playbooks import marked
from gpuctl.playbooks.loader import Catalog
from gpuctl.playbooks.params import Arguments, validate_params
from gpuctl.playbooks.policy import Policy, alert_rule
from gpuctl.playbooks.spec import ParamName, PlaybookName, PodListParam

ChannelId = Annotated[str, StringConstraints(pattern=r"^[CG][A-Z0-9]{2,20}$")]
UserGroupId = Annotated[str, StringConstraints(pattern=r"^S[A-Z0-9]{2,20}$")]
LabelName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=100)]
LabelSource = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*(/[a-zA-Z_][a-zA-Z0-9_]*)?$", max_length=201)]


class Rule(Frozen):
    alert: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    labels: dict[LabelName, str] = Field(default_factory=dict)
    playbook: PlaybookName
    params: dict[ParamName, tuple[LabelSource, ...]] = Field(default_factory=dict)
    fixed: dict[ParamName, str] = Field(default_factory=dict)
    mode: Literal["propose", "auto"] = "propose"
    channel: ChannelId | None = None

    @field_validator("params", mode="before")
    @classmethod
    def _one_label(cls, value: object) -> object:
        if isinstance(value, Mapping):  # `namespace: exported_namespace` is a list of one
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _once(self) -> Rule:
        both = sorted(set(self.params) & set(self.fixed))
        if both:
            raise ValueError(f"{', '.join(both)} both taken from labels and fixed: choose one")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get("alertname") == self.alert and all(labels.get(k) == v for k, v in self.labels.items())

    def given(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The parameter values as text: fixed ones, and each label-fed one from its first label present."""
        out = dict(self.fixed)
        for param, sources in self.params.items():
            value = next((v for source in sources if (v := _from_labels(labels, source))), None)
            if value is not None:
                out[param] = value
        return out


def _from_labels(labels: Mapping[str, str], source: str) -> str | None:
    """A label's value, or `a/b`'s two values joined by '/' when both are set; None when absent or empty."""
    first, _, second = source.partition("/")
    if not second:
        return labels.get(first) or None
    return f"{labels[first]}/{labels[second]}" if labels.get(first) and labels.get(second) else None


class AlertRules(Frozen):
    channel: ChannelId
    mention: UserGroupId | None = None
    rules: tuple[Rule, ...] = ()

    def match(self, labels: Mapping[str, str]) -> Rule | None:
        return next((rule for rule in self.rules if rule.matches(labels)), None)


def arguments(rule: Rule, labels: Mapping[str, str], catalog: Catalog) -> Arguments:
    """The rule's parameters for one alert, validated against the playbook; ParameterError saying what is wrong."""
    return validated(rule, rule.given(labels), catalog)


def validated(rule: Rule, given: Mapping[str, str], catalog: Catalog) -> Arguments:
    """Parameters as text (`Rule.given`, `given_for`) validated against the rule's playbook, or ParameterError."""
    return validate_params(catalog.get(rule.playbook), dict(given.items()))


def pod_list_param(rule: Rule, catalog: Catalog) -> str | None:
    """The label-fed parameter several alerts' pods can be joined in (a pod_list, e.g. `pods`), or None."""
    playbook = catalog.get(rule.playbook)
    return next((name for name in rule.params if isinstance(playbook.parameters.get(name), PodListParam)), None)


def batch_key(rule: Rule, labels: Mapping[str, str], catalog: Catalog) -> tuple[tuple[str, str], ...] | None:
    """What alerts proposed together share: the rule's parameters except the pod list; None when this alert
    names no pod for it (it is proposed alone)."""
    joined = pod_list_param(rule, catalog)
    given = rule.given(labels)
    if joined is None or joined not in given:
        return None
    return tuple(sorted((k, v) for k, v in given.items() if k != joined))


def given_for(rule: Rule, labels: Sequence[Mapping[str, str]], catalog: Catalog) -> dict[str, str]:
    """The parameters as text for alerts proposed together (one batch_key): the first one's, with every alert's
    pods joined, each once, in order."""
    out = rule.given(labels[0])
    joined = pod_list_param(rule, catalog)
    if joined is not None and len(labels) > 1:
        out[joined] = ",".join(dict.fromkeys(rule.given(one).get(joined, "") for one in labels))
    return out


def batch_size(rule: Rule, catalog: Catalog) -> int:
    """How many alerts one proposal may take together: as many pods as the pod-list parameter may name."""
    joined = pod_list_param(rule, catalog)
    param = catalog.get(rule.playbook).parameters.get(joined or "")
    return param.max_items if isinstance(param, PodListParam) else 1


def load_alert_rules(path: Path, catalog: Catalog, policy: Policy) -> AlertRules:
    """The rules in `path`, checked against the catalog and the policy; BotConfigError naming file, line and field."""
    source = str(path)
    rules, doc = marked.load(AlertRules, path, BotConfigError, "alert rules", hint="fix alert_rules")
    problems: list[FileProblem] = []

    def problem(index: int, field: str, message: str, *more: str | int) -> None:
        line = doc.lines.get(("rules", index, field, *more), doc.lines.get(("rules", index), 1))
        problems.append(FileProblem(source, line, ".".join(str(p) for p in ("rules", index, field, *more)), message))

    for index, rule in enumerate(rules.rules):
        playbook = catalog.playbooks.get(rule.playbook)
        if playbook is None:
            problem(index, "playbook", f"no playbook {rule.playbook!r} (known: {', '.join(sorted(catalog.playbooks))})")
            continue
        for field in ("params", "fixed"):
            for name in getattr(rule, field):
                if name not in playbook.parameters:
                    known = ", ".join(playbook.parameters) or "none"
                    problem(index, field, f"{rule.playbook} has no parameter {name!r} (parameters: {known})", name)
        for name, value in rule.fixed.items():
            param = playbook.parameters.get(name)
            if param is not None:
                try:
                    param.parse(value)
                except ValueError as e:
                    problem(index, "fixed", f"{name}={value!r} {e} (expected {param.allowed()})", name)
        if rule.mode == "auto" and alert_rule(policy, rule.playbook) is None:
            problem(index, "mode", f"auto needs the gpuctl policy to let alerts start {rule.playbook} "
                    "(an `alerts:` entry with run_as and max_runs_per_hour)")  # fmt: skip
    if problems:
        marked.raise_as(BotConfigError, f"invalid alert rules {source}", problems)
    return rules
