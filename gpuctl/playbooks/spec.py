"""What a playbook file declares: the schema every `*.yaml` definition is validated against.

A playbook names its typed parameters (with defaults and bounds), what it acts
on (target), the guardrails the engine must keep, the Kubernetes writes it will
perform as the requesting user (for SelfSubjectAccessReview pre-checks),
whether someone else must approve it, whether it can be undone, and the
built-in actions it uses: a closed set, so a file can combine what gpuctl
implements but never invent a new write. Every model is frozen and forbids
unknown fields; durations are written `30m`/`2h` and held as seconds.

Consistency is checked at load time, not at run time: a parameter's default
lies within its bounds, a parameter that tunes a guardrail can only tighten
it, and the declared permissions are exactly those the declared actions need.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AllowInfNan,
    BeforeValidator,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gpuctl.config import parse_duration
from gpuctl.model import Frozen

# Kubernetes name syntaxes (ASCII only; always used with re.fullmatch).
DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = rf"{DNS_LABEL}(\.{DNS_LABEL})*"
LABEL_VALUE = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
QUALIFIED_NAME = rf"({DNS_SUBDOMAIN}/)?{LABEL_VALUE}"

PlaybookName = Annotated[str, StringConstraints(pattern=rf"^{DNS_LABEL}$", max_length=63)]
ParamName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
Glob = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9*?._:/-]+$", max_length=253)]
QualifiedName = Annotated[str, StringConstraints(pattern=rf"^{QUALIFIED_NAME}$", max_length=316)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=600, strip_whitespace=True)]
ScopeKind = Literal["namespace", "pool", "cluster_queue"]
ParamValue = bool | int | float | str


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a duration like 30m, 2h or 90s")
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"{value!r} is a negative duration")
    return seconds


Duration = Annotated[float, BeforeValidator(_seconds)]
FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]


def spell_duration(seconds: float) -> str:
    """Exact and short: 90 → '1m30s', 7200 → '2h', 0.5 → '0.5s' (what a YAML author would write)."""
    whole, fraction = divmod(seconds, 1)
    if fraction:
        return f"{seconds:g}s"
    out, rest = "", int(whole)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        out += f"{count}{unit}" if count else ""
    return out or "0s"


def _range(low: str | None, high: str | None) -> str:
    if low is not None and high is not None:
        return f"{low}..{high}"
    return f">= {low}" if low is not None else f"<= {high}" if high is not None else ""


# ---------------------------------------------------------------------------------------------
# Parameters. Each type parses user text (`parse`) and checks a value against its bounds
# (`check`); both raise ValueError with a reason that reads after "name=value ".
# ---------------------------------------------------------------------------------------------


class _Param(Frozen):
    type: str  # each subclass narrows it to its Literal tag(s)
    help: Text
    required: StrictBool = False
    requires: tuple[ParamName, ...] = Field((), description="other parameters that must be given with this one")

    def parse(self, text: str) -> ParamValue:
        raise NotImplementedError

    def check(self, value: Any) -> None:
        """Bounds, pattern or choices; the value already has the right type."""

    def allowed(self) -> str:
        """The type and its bounds in a few words, for error messages."""
        raise NotImplementedError

    def label(self) -> str:
        """A short type label for tables (`playbook show`)."""
        return self.allowed()

    def show(self, value: Any) -> str:
        return str(value)

    def check_declaration(self) -> None:
        """What must hold between a type's own fields (min <= max); runs before the default is checked."""

    @model_validator(mode="after")
    def _default_fits(self) -> _Param:
        self.check_declaration()
        default = getattr(self, "default", None)
        if default is None:
            return self
        if self.required:
            raise ValueError("a required parameter has no default: drop one of them")
        if self.requires:
            raise ValueError("a parameter with a default is always given, so it cannot require others")
        try:
            self.check(default)
        except ValueError as e:
            raise ValueError(f"default {self.show(default)} {e}") from None
        return self


class _Bounded(_Param):
    min: float | None = None
    max: float | None = None

    def check(self, value: Any) -> None:
        if self.min is not None and value < self.min:
            raise ValueError(f"is below the minimum {self.show(self.min)}")
        if self.max is not None and value > self.max:
            raise ValueError(f"is above the maximum {self.show(self.max)}")

    def bounds(self) -> str:
        return _range(None if self.min is None else self.show(self.min), None if self.max is None else self.show(self.max))

    def allowed(self) -> str:
        return " ".join(part for part in (self.type, self.bounds()) if part)

    def check_declaration(self) -> None:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.show(self.min)} is above max {self.show(self.max)}")


_INT = re.compile(r"[+-]?[0-9]{1,18}", re.ASCII)
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?", re.ASCII)


class IntParam(_Bounded):
    type: Literal["int"]
    default: StrictInt | None = None
    min: StrictInt | None = None
    max: StrictInt | None = None

    def parse(self, text: str) -> int:
        if not _INT.fullmatch(text.strip()):
            raise ValueError("is not a whole number")
        value = int(text.strip())
        self.check(value)
        return value


class FloatParam(_Bounded):
    type: Literal["float"]
    default: FiniteFloat | None = None
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None

    def parse(self, text: str) -> float:
        if len(text) > 40 or not _FLOAT.fullmatch(text.strip()):
            raise ValueError("is not a number")
        value = float(text.strip())
        if not math.isfinite(value):
            raise ValueError("is not a finite number")
        self.check(value)
        return value

    def show(self, value: Any) -> str:
        return f"{value:g}"


class DurationParam(_Bounded):
    type: Literal["duration"]
    default: Duration | None = None
    min: Duration | None = None
    max: Duration | None = None

    def parse(self, text: str) -> float:
        if len(text) > 40:
            raise ValueError("is not a duration like 30m, 1h30m or 90s")
        try:
            value = _seconds(text)
        except ValueError:
            raise ValueError("is not a duration like 30m, 1h30m or 90s") from None
        self.check(value)
        return value

    def show(self, value: Any) -> str:
        return spell_duration(float(value))


_TRUE, _FALSE = frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"})


class BoolParam(_Param):
    type: Literal["bool"]
    default: StrictBool | None = None

    def parse(self, text: str) -> bool:
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("is not true or false")

    def show(self, value: Any) -> str:
        return str(value).lower()

    def allowed(self) -> str:
        return "true or false"

    def label(self) -> str:
        return "bool"


class StringParam(_Param):
    type: Literal["string"]
    pattern: str = Field(min_length=1, description="a Python regular expression the whole value must match")
    max_length: StrictInt = Field(253, ge=1, le=4096)
    default: StrictStr | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {e}") from None
        return pattern

    def check(self, value: Any) -> None:
        if len(value) > self.max_length:
            raise ValueError(f"is longer than {self.max_length} characters")
        if not value.isprintable():
            raise ValueError("contains control characters")
        if not re.fullmatch(self.pattern, value):
            raise ValueError(f"does not match {self.pattern}")

    def parse(self, text: str) -> str:
        self.check(text)
        return text

    def show(self, value: Any) -> str:
        return repr(value)

    def allowed(self) -> str:
        return f"string matching {self.pattern}"


class EnumParam(_Param):
    type: Literal["enum"]
    choices: tuple[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$", max_length=63)], ...] = Field(
        min_length=1
    )
    default: StrictStr | None = None

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(choices)) != len(choices):
            raise ValueError("choices repeat a value")
        return choices

    def check(self, value: Any) -> None:
        if value not in self.choices:
            raise ValueError("is not a choice")

    def parse(self, text: str) -> str:
        self.check(text)
        return text

    def allowed(self) -> str:
        return f"one of {', '.join(self.choices)}"

    def label(self) -> str:
        return f"enum: {' | '.join(self.choices)}"


NameKind = Literal["namespace", "node", "pool", "mig_profile", "object_name"]
# kind -> (syntax, longest, what it is)
NAME_SYNTAX: Mapping[str, tuple[str, int, str]] = {
    "namespace": (DNS_LABEL, 63, "a namespace (DNS label: a-z, 0-9, '-')"),
    "node": (DNS_SUBDOMAIN, 253, "a node name (DNS subdomain: a-z, 0-9, '-', '.')"),
    "pool": (LABEL_VALUE, 63, "a pool name (label value: letters, digits, '-', '_', '.')"),
    "mig_profile": (LABEL_VALUE, 63, "a MIG config name from the MIG manager's config, e.g. all-1g.10gb"),
    "object_name": (DNS_SUBDOMAIN, 253, "an object name (DNS subdomain: a-z, 0-9, '-', '.')"),
}


class NameParam(_Param):
    """A Kubernetes name; what it names also tells the engine and policy what it is (a namespace, a pool...)."""

    type: NameKind
    default: StrictStr | None = None

    def check(self, value: Any) -> None:
        syntax, longest, _ = NAME_SYNTAX[self.type]
        if len(value) > longest or not re.fullmatch(syntax, value, re.ASCII):
            raise ValueError("is not a valid name")

    def parse(self, text: str) -> str:
        self.check(text)
        return text

    def allowed(self) -> str:
        return NAME_SYNTAX[self.type][2]

    def label(self) -> str:
        return self.type


POD_KEY = rf"({DNS_LABEL})/({DNS_SUBDOMAIN})"


def pod_keys(text: str) -> tuple[str, ...]:
    """`"ns/a, ns/b"` → `("ns/a", "ns/b")`, in the order given; ValueError for an empty list, a malformed
    entry (not namespace/name) or one given twice. Commas or spaces separate entries."""
    entries = [e for e in re.split(r"[,\s]+", text.strip()) if e]
    if not entries:
        raise ValueError("names no pod")
    seen: set[str] = set()
    for entry in entries:
        namespace, _, name = entry.partition("/")
        if len(namespace) > 63 or len(name) > 253 or not re.fullmatch(POD_KEY, entry, re.ASCII):
            raise ValueError(f"has {entry[:80]!r}, which is not namespace/name")
        if entry in seen:
            raise ValueError(f"names {entry} twice")
        seen.add(entry)
    return tuple(entries)


class PodListParam(_Param):
    """Pods by `namespace/name`, comma-separated; held as that text, normalized (`pod_keys` reads it back)."""

    type: Literal["pod_list"]
    max_items: StrictInt = Field(50, ge=1, le=1000, description="how many pods one value may name")
    default: StrictStr | None = None

    def check(self, value: Any) -> None:
        keys = pod_keys(value)
        if len(keys) > self.max_items:
            raise ValueError(f"names {len(keys)} pods, more than {self.max_items}")

    def parse(self, text: str) -> str:
        if len(text) > self.max_items * 320:
            raise ValueError(f"is longer than {self.max_items} pod names can be")
        self.check(text)
        return ",".join(pod_keys(text))

    def allowed(self) -> str:
        return f"up to {self.max_items} pods as namespace/name, separated by commas"

    def label(self) -> str:
        return "pods (namespace/name,...)"

    def namespaces(self, value: str) -> tuple[str, ...]:
        """The namespaces a (parsed) value names, each once."""
        return tuple(dict.fromkeys(key.partition("/")[0] for key in pod_keys(value)))


Parameter = Annotated[
    IntParam | FloatParam | DurationParam | BoolParam | StringParam | EnumParam | NameParam | PodListParam,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------------------------------------
# Target, actions, permissions, guardrails.
# ---------------------------------------------------------------------------------------------


class Selector(StrEnum):
    idle_gpu_pods = "idle_gpu_pods"
    node = "node"
    pool = "pool"
    quota = "quota"


SELECTOR_TEXT: Mapping[Selector, str] = {
    Selector.idle_gpu_pods: "GPU pods whose every GPU has been idle (gpuctl's definition) for at least idle_for",
    Selector.node: "one node, by name",
    Selector.pool: "one GPU node pool: a Cluster API MachineDeployment or a Karpenter NodePool",
    Selector.quota: "a namespace's ResourceQuota or a Kueue ClusterQueue's GPU nominalQuota",
}


class Target(Frozen):
    """What the playbook acts on, which parameters choose or narrow it, and what policy scopes it by."""

    select: Selector
    by: tuple[ParamName, ...] = Field((), description="parameters that choose or narrow the targets")
    scopes: tuple[ScopeKind, ...] = Field(
        min_length=1, description="the policy scopes a target is authorized in (a node counts as its pool)"
    )


class Permission(Frozen):
    """One Kubernetes write the playbook performs as the requesting user (checked with SelfSubjectAccessReview)."""

    verb: Literal["create", "patch", "update"]
    group: str = Field("", pattern=rf"^({DNS_SUBDOMAIN})?$", description="API group; empty for the core group")
    resource: str = Field(pattern=r"^[a-z][a-z0-9]*$")
    subresource: str | None = Field(None, pattern=r"^[a-z][a-z0-9]*$")
    namespaced: StrictBool

    def __str__(self) -> str:
        name = self.resource + (f".{self.group}" if self.group else "") + (f"/{self.subresource}" if self.subresource else "")
        return f"{self.verb} {name}"


class Action(StrEnum):
    evict_pods = "evict_pods"
    annotate_pods = "annotate_pods"
    record_pod_event = "record_pod_event"
    cordon_node = "cordon_node"
    uncordon_node = "uncordon_node"
    set_node_label = "set_node_label"
    scale_machinedeployment = "scale_machinedeployment"
    mark_machine_for_deletion = "mark_machine_for_deletion"
    set_nodepool_gpu_limit = "set_nodepool_gpu_limit"
    set_resourcequota = "set_resourcequota"
    set_clusterqueue_quota = "set_clusterqueue_quota"


def _writes(verb: Literal["create", "patch", "update"], resource: str, *, namespaced: bool, group: str = "",
            subresource: str | None = None) -> tuple[Permission, ...]:  # fmt: skip
    return (Permission(verb=verb, group=group, resource=resource, subresource=subresource, namespaced=namespaced),)


# What each built-in action does and the writes it performs as the requester.
ACTIONS: Mapping[Action, tuple[str, tuple[Permission, ...]]] = {
    Action.evict_pods: ("evict pods through the Eviction API (PodDisruptionBudgets respected)",
                        _writes("create", "pods", subresource="eviction", namespaced=True)),
    Action.annotate_pods: ("annotate pods (the staged-reclaim notice)", _writes("patch", "pods", namespaced=True)),
    Action.record_pod_event: ("post an Event on a pod", _writes("create", "events", namespaced=True)),
    Action.cordon_node: ("mark a node unschedulable", _writes("patch", "nodes", namespaced=False)),
    Action.uncordon_node: ("mark a node schedulable again", _writes("patch", "nodes", namespaced=False)),
    Action.set_node_label: ("set a node label (nvidia.com/mig.config)", _writes("patch", "nodes", namespaced=False)),
    Action.scale_machinedeployment: ("set a Cluster API MachineDeployment's replicas through its scale subresource",
                                     _writes("patch", "machinedeployments", group="cluster.x-k8s.io",
                                             subresource="scale", namespaced=True)),
    Action.mark_machine_for_deletion: ("annotate a Machine cluster.x-k8s.io/delete-machine so scale-down removes it",
                                       _writes("patch", "machines", group="cluster.x-k8s.io", namespaced=True)),
    Action.set_nodepool_gpu_limit: ("set a Karpenter NodePool's spec.limits nvidia.com/gpu",
                                    _writes("patch", "nodepools", group="karpenter.sh", namespaced=False)),
    Action.set_resourcequota: ("set a ResourceQuota's spec.hard requests.<GPU resource>",
                               _writes("patch", "resourcequotas", namespaced=True)),
    Action.set_clusterqueue_quota: ("set a Kueue ClusterQueue flavor's nominalQuota for a GPU resource",
                                    _writes("patch", "clusterqueues", group="kueue.x-k8s.io", namespaced=False)),
}  # fmt: skip


class Check(StrEnum):
    pod_age_at_least_idle_window = "pod_age_at_least_idle_window"
    spare_if_busy_again = "spare_if_busy_again"
    eviction_api_only = "eviction_api_only"
    pdb_respected = "pdb_respected"
    mig_profile_exists = "mig_profile_exists"
    mig_profile_fits_node = "mig_profile_fits_node"
    drain_before_relabel = "drain_before_relabel"
    restore_on_failure = "restore_on_failure"
    verify_mig_resources = "verify_mig_resources"
    autoscaler_bounds = "autoscaler_bounds"
    no_busy_node_removal = "no_busy_node_removal"
    not_below_usage = "not_below_usage"
    warn_overcommit = "warn_overcommit"
    revert_when_expired = "revert_when_expired"


CHECK_TEXT: Mapping[Check, str] = {
    Check.pod_age_at_least_idle_window: "a pod younger than idle_for (and never younger than min_pod_age) is never chosen",
    Check.spare_if_busy_again: "staged mode: a pod whose GPUs became busy during the grace period is not evicted",
    Check.eviction_api_only: "pods leave only through the Eviction API, never by delete",
    Check.pdb_respected: "a PodDisruptionBudget refusal (429) is retried until the deadline and reported, never bypassed; "
    "a pod under several budgets (500) is reported",
    Check.mig_profile_exists: "the profile is a key under mig-configs in the MIG manager's config for the node "
    "(<node>-mig-config, else default-mig-parted-config)",
    Check.mig_profile_fits_node: "the profile's device filter matches the node's GPU model",
    Check.drain_before_relabel: "the node is cordoned and its GPU pods evicted before the label changes; "
    "with GPU pods and drain=false the plan refuses",
    Check.restore_on_failure: "mig.config.state failed: the previous profile is put back; pending past pending_timeout: "
    "reported, the node stays cordoned",
    Check.verify_mig_resources: "after success the node's MIG resources match the profile; then it is uncordoned",
    Check.autoscaler_bounds: "the new size stays within the cluster-autoscaler min/max annotations; a manual size an "
    "autoscaler or ClusterClass topology will override is warned about",
    Check.no_busy_node_removal: "scale-down never removes a node with running GPU pods unless the plan drains it",
    Check.not_below_usage: "a quota below current usage is refused unless force=true",
    Check.warn_overcommit: "a warning when quotas together exceed the cluster's GPU capacity",
    Check.revert_when_expired: "with revert_after, the previous quota is restored when it expires",
}


class OptOut(Frozen):
    """A label or annotation that keeps an object out of this playbook's hands."""

    object: Literal["pod", "node"] = "pod"
    label: QualifiedName | None = None
    annotation: QualifiedName | None = None
    value: StrictStr = Field(max_length=63)

    @model_validator(mode="after")
    def _one_key(self) -> OptOut:
        if (self.label is None) == (self.annotation is None):
            raise ValueError("give exactly one of label and annotation")
        return self

    def __str__(self) -> str:
        kind, key = ("label", self.label) if self.label else ("annotation", self.annotation)
        return f"{self.object} {kind} {key}={self.value}"


class Protected(Frozen):
    namespaces: tuple[Glob, ...] = ()
    priority_classes: tuple[Glob, ...] = ()
    opt_out: tuple[OptOut, ...] = ()
    on_match: Literal["skip", "refuse"] = Field(
        "refuse", description="skip protected pods (selection playbooks), or refuse the plan (a node that must be drained)"
    )


class Guardrails(Frozen):
    """Limits no parameter can lift; a parameter of the same name (max_pods...) may only tighten them."""

    max_pods: StrictInt | None = Field(None, ge=1, description="pods evicted per run")
    max_gpus: StrictInt | None = Field(None, ge=1, description="GPUs affected per run (freed, added, removed or granted)")
    max_nodes: StrictInt | None = Field(None, ge=1, description="nodes changed, added or removed per run")
    min_pod_age: Duration | None = Field(None, description="never touch a pod younger than this")
    deadline: Duration = Field(gt=0, description="how long a run may keep acting (retrying refused evictions, waiting)")
    protected: Protected = Protected()
    checks: tuple[Check, ...] = ()


class Approval(Frozen):
    required: StrictBool
    expires_after: Duration = Field(4 * 3600.0, gt=0, description="an unapproved run lapses after this long")


# guardrail -> (parameter that tunes it, the parameter bound that must respect it)
TUNABLE: Mapping[str, tuple[str, Literal["min", "max"]]] = {
    "max_pods": ("max_pods", "max"),
    "max_gpus": ("max_gpus", "max"),
    "max_nodes": ("max_nodes", "max"),
    "min_pod_age": ("idle_for", "min"),
}


def _no_repeats(what: str, items: tuple[Any, ...]) -> None:
    repeated = sorted({str(i) for i in items if items.count(i) > 1})
    if repeated:
        raise ValueError(f"{what} listed twice: {', '.join(repeated)}")


class Playbook(Frozen):
    """One playbook definition (one YAML file). Field order matters: later validators read earlier fields."""

    name: PlaybookName
    description: Text
    approval: Approval
    reversible: StrictBool
    parameters: dict[ParamName, Parameter] = Field(default_factory=dict)
    exactly_one_of: tuple[tuple[ParamName, ...], ...] = Field((), description="groups of which exactly one is given")
    target: Target
    actions: tuple[Action, ...] = Field(min_length=1)
    permissions: tuple[Permission, ...]
    guardrails: Guardrails

    @field_validator("parameters")
    @classmethod
    def _requires_known(cls, params: dict[str, _Param]) -> dict[str, _Param]:
        for name, param in params.items():
            for other in param.requires:
                if other not in params or other == name:
                    raise ValueError(f"{name} requires {other!r}, which is not another parameter")
        return params

    @field_validator("exactly_one_of")
    @classmethod
    def _groups(cls, groups: tuple[tuple[str, ...], ...], info: ValidationInfo) -> tuple[tuple[str, ...], ...]:
        if "parameters" not in info.data:
            return groups  # already reported
        params: dict[str, Any] = info.data["parameters"]
        for group in groups:
            if len(set(group)) < 2:
                raise ValueError(f"{list(group)}: a group needs two or more different parameters")
            for name in group:
                param = params.get(name)
                if param is None:
                    raise ValueError(f"{name!r} is not a parameter")
                if param.required or getattr(param, "default", None) is not None:
                    raise ValueError(f"{name} is required or has a default, so it is always given")
        return groups

    @field_validator("target")
    @classmethod
    def _target_params(cls, target: Target, info: ValidationInfo) -> Target:
        if "parameters" not in info.data:
            return target
        unknown = [name for name in target.by if name not in info.data["parameters"]]
        if unknown:
            raise ValueError(f"target.by names no parameter {', '.join(unknown)}")
        return target

    @field_validator("actions")
    @classmethod
    def _actions_once(cls, actions: tuple[Action, ...]) -> tuple[Action, ...]:
        _no_repeats("action", actions)
        return actions

    @field_validator("permissions")
    @classmethod
    def _least_privilege(cls, declared: tuple[Permission, ...], info: ValidationInfo) -> tuple[Permission, ...]:
        _no_repeats("permission", declared)
        if "actions" not in info.data:
            return declared
        needed = {p: a for a in info.data["actions"] for p in ACTIONS[a][1]}
        missing = [f"{p} (for {a})" for p, a in needed.items() if p not in declared]
        unused = [str(p) for p in declared if p not in needed]
        if missing:
            raise ValueError(f"missing {'; '.join(missing)}")
        if unused:
            raise ValueError(f"{', '.join(unused)} is needed by none of the actions")
        return declared

    @field_validator("guardrails")
    @classmethod
    def _tuned_within(cls, guardrails: Guardrails, info: ValidationInfo) -> Guardrails:
        params: dict[str, Any] = info.data.get("parameters", {})
        for rail, (name, bound) in TUNABLE.items():
            limit, param = getattr(guardrails, rail), params.get(name)
            if limit is None or param is None:
                continue
            value = getattr(param, bound, None)
            if value is None or (value > limit if bound == "max" else value < limit):
                raise ValueError(
                    f"parameter {name} must declare {bound} {'<=' if bound == 'max' else '>='} {param.show(limit)} "
                    f"so it cannot lift guardrail {rail}"
                )
        return guardrails
