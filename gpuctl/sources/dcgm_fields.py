"""What dcgm-exporter calls each quantity gpuctl reads, and how to parse its series.

dcgm-exporter 4.9 renamed its default metrics to DCGM 4.7's field names and
changed some units (utilisation 0-1 instead of %, memory in bytes instead of
MiB). A fleet upgrading node by node exports both generations at once, so
every quantity lists all its names, highest priority first, with the factor
that turns the raw value into gpuctl's unit (percent, MiB, °C, W).

The 4.9 names come from NVIDIA's release notes and the DCGM 4.7 field list;
nobody here has scraped a real 4.9 exporter yet.

Parsing never raises: a series with a missing or malformed label, or a value
that is not a finite number, becomes a `Rejection` that the caller counts.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from operator import itemgetter
from typing import Any, Literal, TypedDict

import msgspec

from gpuctl.model import PodRef
from gpuctl.state.frozen import maker
from gpuctl.state.records import GpuSample

MIB = 1024 * 1024


class Quantity(str, Enum):
    UTIL = "util_pct"
    FB_USED = "mem_used_mib"
    FB_FREE = "mem_free_mib"
    FB_TOTAL = "mem_total_mib"  # not a GpuSample field: only used to derive free memory
    TEMP = "temp_c"
    POWER = "power_w"
    XID = "xid"


@dataclass(frozen=True, slots=True)
class MetricName:
    name: str
    quantity: Quantity
    factor: float  # raw value * factor = gpuctl unit
    generation: Literal["classic", "4.9"]


# Priority order within a quantity: the first name present for a GPU wins.
METRICS: tuple[MetricName, ...] = (
    MetricName("DCGM_FI_DEV_GPU_UTIL", Quantity.UTIL, 1.0, "classic"),
    MetricName("DCGM_FI_DEV_GPU_UTIL_RATIO", Quantity.UTIL, 100.0, "4.9"),
    # MIG instances report no GPU_UTIL; graphics-engine activity is the MIG-aware stand-in.
    MetricName("DCGM_FI_PROF_GR_ENGINE_ACTIVE", Quantity.UTIL, 100.0, "classic"),
    MetricName("DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO", Quantity.UTIL, 100.0, "4.9"),
    MetricName("DCGM_FI_DEV_FB_USED", Quantity.FB_USED, 1.0, "classic"),
    MetricName("DCGM_FI_DEV_FB_USED_BYTES", Quantity.FB_USED, 1.0 / MIB, "4.9"),
    MetricName("DCGM_FI_DEV_FB_FREE", Quantity.FB_FREE, 1.0, "classic"),
    MetricName("DCGM_FI_DEV_FB_FREE_BYTES", Quantity.FB_FREE, 1.0 / MIB, "4.9"),
    MetricName("DCGM_FI_DEV_FB_TOTAL", Quantity.FB_TOTAL, 1.0, "classic"),
    MetricName("DCGM_FI_DEV_FB_CAPACITY_BYTES", Quantity.FB_TOTAL, 1.0 / MIB, "4.9"),
    MetricName("DCGM_FI_DEV_GPU_TEMP", Quantity.TEMP, 1.0, "classic"),
    MetricName("DCGM_FI_DEV_GPU_TEMP_CELSIUS", Quantity.TEMP, 1.0, "4.9"),
    MetricName("DCGM_FI_DEV_POWER_USAGE", Quantity.POWER, 1.0, "classic"),
    MetricName("DCGM_FI_DEV_BOARD_POWER_WATTS", Quantity.POWER, 1.0, "4.9"),
    MetricName("DCGM_FI_DEV_XID_ERRORS", Quantity.XID, 1.0, "classic"),
    MetricName("DCGM_FI_DEV_XID_ERROR", Quantity.XID, 1.0, "4.9"),
)
BY_NAME: Mapping[str, MetricName] = {m.name: m for m in METRICS}
_PRIORITY: Mapping[str, int] = {m.name: i for i, m in enumerate(METRICS)}
# MIG instances: DCGM_FI_DEV_GPU_UTIL is absent or a meaningless 0, the profiling ratio is real.
MIG_UTIL_FIRST = frozenset({"DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO"})


def names_for(quantity: Quantity) -> tuple[str, ...]:
    return tuple(m.name for m in METRICS if m.quantity is quantity)


# Pod label spellings, highest priority first. `exported_*` appears when the scrape
# target has its own pod/namespace labels and honor_labels is off: then the plain
# `pod` is the exporter's own pod, and `exported_pod` is the workload's.
PodSpelling = Literal["exported", "plain", "legacy"]
_POD_LABELS: tuple[tuple[PodSpelling, str, str, str], ...] = (
    ("exported", "exported_pod", "exported_namespace", "exported_container"),
    ("plain", "pod", "namespace", "container"),
    ("legacy", "pod_name", "pod_namespace", "container_name"),
)
# Every label the parsers below read (identity, pod, the scrape target): the queries keep these and no
# others (queries.SERIES_LABELS), so an answer carries no pci_bus_id, device, driver version or job.
POD_LABELS_READ: tuple[str, ...] = tuple(label for spelling in _POD_LABELS for label in spelling[1:])
IDENTITY_LABELS_READ = ("Hostname", "hostname", "gpu", "UUID", "uuid", "modelName", "model_name", "GPU_I_PROFILE", "GPU_I_ID")
LABELS_READ: tuple[str, ...] = (
    *IDENTITY_LABELS_READ,
    *POD_LABELS_READ,
    "instance",
)
# gpu-operator names the exporter's pods nvidia-dcgm-exporter-*, the Helm chart dcgm-exporter-*.
_EXPORTER_POD = "dcgm-exporter"


@dataclass(frozen=True, slots=True)
class GpuIdentity:
    hostname: str
    index: int
    uuid: str | None = None
    model: str | None = None
    mig_profile: str | None = None
    mig_instance: int | None = None

    @property
    def key(self) -> str:
        base = f"{self.hostname}/{self.index}"
        return base if self.mig_instance is None else f"{base}/mig{self.mig_instance}"


@dataclass(frozen=True, slots=True)
class Reading:
    """One accepted series: which GPU, which quantity, its value in gpuctl units."""

    gpu: GpuIdentity
    metric: MetricName
    value: float
    pod: PodRef | None = None
    pod_spelling: PodSpelling | None = None
    scrape_instance: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedResults:
    readings: tuple[Reading, ...]
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    evaluated_at: float | None = None  # the earliest time its series carry (series_time), Unix seconds


class _Malformed(ValueError):
    pass


def _label(labels: Mapping[str, Any], *names: str) -> str | None:
    # Interned: every refresh decodes each GPU's hostname, UUID, model and pod afresh; kept, they would
    # be new copies of the same text in every sample, row and index (megabytes at 12,500 GPUs).
    for name in names:
        value = labels.get(name)
        if isinstance(value, str) and value:
            return sys.intern(value)
    return None


def _int_label(labels: Mapping[str, Any], name: str, *, required: bool) -> int | None:
    raw = _label(labels, name)
    if raw is None:
        if required:
            raise _Malformed(f"no {name} label")
        return None
    if not raw.isdigit():  # rejects "-1", "1.0", "nvidia0"
        raise _Malformed(f"{name} label is not a number")
    return int(raw)


@dataclass(slots=True)
class RefreshMemo:
    """What the series of one refresh share, so that a GPU or pod named again is looked up, not parsed again.

    A refresh names each GPU once per quantity (~75,000 series at 12,500 GPUs). `identities`: one GpuIdentity
    per GPU (~75,000 fewer objects alive at once), keyed by itself and by the raw values of the labels read
    (IDENTITY_LABELS_READ); `pods`: parse_pod's answers by the raw values of POD_LABELS_READ. Dropped with
    the refresh (kept, its keys would hold a refresh's label strings). Not thread-safe: one refresh's answers
    parse on one thread."""

    identities: dict[object, GpuIdentity] = field(default_factory=dict)
    pods: dict[tuple[Any, ...], tuple[PodRef, PodSpelling] | None] = field(default_factory=dict)


def parse_identity(labels: Mapping[str, Any], memo: RefreshMemo | None = None) -> GpuIdentity:
    """The GPU a series belongs to; raises ValueError when its labels cannot name one."""
    if memo is None:
        return _parse_identity(labels)
    raw = _raw(labels, IDENTITY_LABELS_READ)
    known = memo.identities.get(raw) if raw is not None else None
    if known is None:
        gpu = _parse_identity(labels)
        known = memo.identities.setdefault(gpu, gpu)
        if raw is not None:
            memo.identities[raw] = known
    return known


def _raw(labels: Mapping[str, Any], names: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The values of `names` in `labels`, as a memo key; None when one cannot be a key (garbage)."""
    raw = tuple(map(labels.get, names))
    try:
        hash(raw)
    except TypeError:
        return None
    return raw


def _parse_identity(labels: Mapping[str, Any]) -> GpuIdentity:
    hostname = _label(labels, "Hostname", "hostname")
    if hostname is None:
        raise _Malformed("no Hostname label")
    index = _int_label(labels, "gpu", required=True)
    assert index is not None
    return GpuIdentity(
        hostname=hostname,
        index=index,
        uuid=_label(labels, "UUID", "uuid"),
        model=_label(labels, "modelName", "model_name"),
        mig_profile=_label(labels, "GPU_I_PROFILE"),
        mig_instance=_int_label(labels, "GPU_I_ID", required=False),
    )


_make_pod_ref = maker(PodRef)


class PodRefs:
    """One PodRef per pod, shared by every series that names it and kept from one refresh to the next.

    A refresh names each pod once per quantity (~75,000 series at 12,500 GPUs): one PodRef each would
    be thousands of models made and thrown away per refresh. Kept across refreshes, the samples and GPU
    rows of consecutive refreshes hold the same PodRef (one set for 10,000 pods, not one per refresh
    still referenced, and equal rows compare by identity). Not thread-safe: one refresh's answers parse
    on one thread."""

    __slots__ = ("_kept", "_named")

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str, str | None], PodRef] = {}  # named by the refresh before
        self._named: dict[tuple[str, str, str | None], PodRef] = {}  # named since `next_refresh`

    def get(self, namespace: str, name: str, container: str | None) -> PodRef:
        key = (namespace, name, container)
        ref = self._named.get(key)
        if ref is None:
            ref = self._kept.get(key)
            if ref is None:  # the labels are validated strings: the model needs no validation
                ref = _make_pod_ref({"namespace": namespace, "name": name, "container": container})
            self._named[key] = ref
        return ref

    def next_refresh(self) -> None:
        """A refresh starts: keep the refs the last one named, forget pods it did not name."""
        if self._named:
            self._kept, self._named = self._named, {}


def parse_pod(
    labels: Mapping[str, Any], pods: PodRefs | None = None, memo: RefreshMemo | None = None
) -> tuple[PodRef, PodSpelling] | None:
    """The pod a series names, and how; `pods`: the refs to share (see PodRefs), else a new PodRef."""
    raw = None if memo is None else _raw(labels, POD_LABELS_READ)
    if raw is None or memo is None:
        return _parse_pod(labels, pods)
    known = memo.pods.get(raw, _UNSEEN)
    if known is not _UNSEEN:
        return known  # type: ignore[return-value]
    pod = memo.pods[raw] = _parse_pod(labels, pods)
    return pod


_UNSEEN = object()  # RefreshMemo.pods holds None for series that name no pod


def _parse_pod(labels: Mapping[str, Any], pods: PodRefs | None) -> tuple[PodRef, PodSpelling] | None:
    for spelling, pod_label, ns_label, container_label in _POD_LABELS:
        name, namespace = _label(labels, pod_label), _label(labels, ns_label)
        if spelling == "plain" and name and _EXPORTER_POD in name:
            continue  # the scrape target's own pod label, not a workload holding the GPU
        if name and namespace:
            # Prometheus renames only labels the target also has: a target without a
            # `container` label leaves the exporter's `container` as it was.
            fallback = ("container",) if spelling == "exported" else ()
            container = _label(labels, container_label, *fallback)
            if pods is None:
                return PodRef(namespace=namespace, name=name, container=container), spelling
            return pods.get(namespace, name, container), spelling
    return None


def parse_value(raw: Any) -> float:
    """A result's `value` ([timestamp, "number"]) as a finite, non-negative float."""
    try:
        value = float(raw[1])
    except (TypeError, ValueError, IndexError, KeyError):
        raise _Malformed("value is not a number") from None
    if not math.isfinite(value):
        raise _Malformed("value is NaN or infinite")
    if value < 0:
        raise _Malformed("value is negative")
    return value


def parse_series(
    series: Mapping[str, Any], pods: PodRefs | None = None, memo: RefreshMemo | None = None
) -> Reading | Rejection:
    """One element of a Prometheus instant-query result (`{"metric": {...}, "value": [t, "v"]}`);
    `pods`: see parse_pod; `memo`: see RefreshMemo."""
    try:
        labels = series.get("metric")
        if not isinstance(labels, Mapping):
            raise _Malformed("no labels")
        metric = BY_NAME.get(labels.get("__name__", ""))
        if metric is None:
            raise _Malformed("unknown metric name")
        gpu = parse_identity(labels, memo)
        value = parse_value(series.get("value")) * metric.factor
        pod = parse_pod(labels, pods, memo)
    except _Malformed as e:
        return Rejection(str(e))
    except (AttributeError, TypeError) as e:  # a result that is not shaped like one
        return Rejection(f"malformed series: {type(e).__name__}")
    return Reading(
        gpu=gpu,
        metric=metric,
        value=value,
        pod=pod[0] if pod else None,
        pod_spelling=pod[1] if pod else None,
        scrape_instance=_label(labels, "instance"),
    )


class _Series(TypedDict, total=False):
    metric: dict[str, str]
    value: tuple[float, str]


class _Data(TypedDict, total=False):
    result: list[msgspec.Raw]


class _Answer(TypedDict, total=False):
    data: _Data


# An instant query's answer split in C into its series' raw JSON (views of the body, not copies), and each
# series decoded to just what parse_series reads. Stateless, like compiled patterns.
_ANSWER = msgspec.json.Decoder(_Answer)
_SERIES = msgspec.json.Decoder(_Series)


class Results:
    """An answer's result list, each series decoded as it is read.

    Decoded whole, a 12,500-series answer is ~17 MiB of small objects at once, freed after its readings
    are made: arenas that the readings and samples made meanwhile keep from going back to the system. One
    series at a time reuses the same few blocks, and costs less CPU too (BENCHMARKS.md §8, session 12).
    Each pass decodes again: read it once (or make a list)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[msgspec.Raw]) -> None:
        self._raw = raw

    def __len__(self) -> int:
        return len(self._raw)

    def __iter__(self) -> Iterator[Any]:
        for raw in self._raw:
            try:
                yield _SERIES.decode(raw)
            except msgspec.ValidationError:  # off that shape (a label that is no string): in full, judged alone
                yield msgspec.json.decode(raw)


def decode_results(body: bytes) -> Results | Any:
    """An instant query's answer's `data.result`: Results when it is a list, else (a result that is no
    list) what the JSON holds there. A series off the shape parse_series reads is decoded in full, for
    parse_series to judge on its own. Raises ValueError for bytes that are not JSON, KeyError or TypeError
    for JSON without `data.result`."""
    try:
        answer: Any = _ANSWER.decode(body)
    except msgspec.ValidationError:
        return json.loads(body)["data"]["result"]
    return Results(answer["data"]["result"])


# datetime's range (years 1 to 9999) in Unix seconds, a day inside each end: outside it a timestamp is garbage.
_TIME_RANGE = (datetime(1, 1, 2, tzinfo=UTC).timestamp(), datetime(9999, 12, 30, tzinfo=UTC).timestamp())


def series_time(series: Any) -> float | None:
    """When Prometheus evaluated a series of an instant query's answer (its value's timestamp, Unix seconds);
    None when the series carries none that can be a time."""
    try:
        at = float(series["value"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    low, high = _TIME_RANGE
    return at if low <= at <= high else None  # NaN and infinities fail both


def parse_results(
    results: Iterable[Any], pods: PodRefs | None = None, memo: RefreshMemo | None = None
) -> ParsedResults:
    """Every series of an answer; `pods`: see parse_pod; `memo`: see RefreshMemo."""
    readings: list[Reading] = []
    reasons: Counter[str] = Counter()
    earliest: float | None = None
    for series in results:  # one pass: Results decodes each series as it is read
        parsed = parse_series(series, pods, memo) if isinstance(series, Mapping) else Rejection("malformed series: not an object")
        if isinstance(parsed, Rejection):
            reasons[parsed.reason] += 1
        else:
            readings.append(parsed)
        at = series_time(series)
        if at is not None and (earliest is None or at < earliest):
            earliest = at
    return ParsedResults(tuple(readings), sum(reasons.values()), reasons, earliest)


_SPELLING_RANK: Mapping[PodSpelling, int] = {"exported": 0, "plain": 1, "legacy": 2}


_SLOT: Mapping[Quantity, int] = {q: i for i, q in enumerate(Quantity)}
_NO_READING = len(METRICS)  # a priority below every reading's (see _priority): the quantity has none yet


@dataclass(slots=True)
class _Merging:
    """One GPU's readings as they merge. Per quantity (its _SLOT), the best priority so far and its
    value, in two flat lists rather than a dict of tuples: a refresh holds ~12,500 of these at once.
    The pod: the best named with exported or legacy labels (spelling rank, answer order, ref), and every one
    named with plain labels (answer order, scrape target, ref), judged when the refresh is whole."""

    gpu: GpuIdentity
    priorities: list[int] = field(default_factory=lambda: [_NO_READING] * len(_SLOT))
    values: list[float | None] = field(default_factory=lambda: [None] * len(_SLOT))
    pod: tuple[int, int, PodRef] | None = None
    plain: list[tuple[int, str | None, PodRef]] | None = None

    def value(self, quantity: Quantity) -> float | None:
        return self.values[_SLOT[quantity]]

    def pod_ref(self, renamed: Set[str]) -> PodRef | None:
        """The pod holding the GPU: exported labels first, then plain ones (but not a renamed target's: its plain
        `pod` is the exporter itself), then legacy; of two of the same spelling, the earlier answer's, then the
        first read."""
        if self.pod is not None and self.pod[0] == _SPELLING_RANK["exported"]:
            return self.pod[2]
        plain = min((p for p in self.plain or () if p[1] not in renamed), key=itemgetter(0), default=None)
        if plain is not None:
            return plain[2]
        return None if self.pod is None else self.pod[2]


def _priority(reading: Reading) -> int:
    rank = _PRIORITY[reading.metric.name]
    if reading.gpu.mig_instance is not None and reading.metric.name in MIG_UTIL_FIRST:
        rank -= len(METRICS)
    return rank


class ReadingsMerger:
    """A refresh's readings joined per GPU (one per quantity) into whole GpuSamples, an answer at a time:
    each answer's readings can go once added (at 12,500 GPUs, ~12,500 per answer), not wait for the others.
    The samples do not depend on the order answers are added in, only on their `order`. Not thread-safe."""

    __slots__ = ("_merging", "_renamed")

    def __init__(self) -> None:
        self._merging: dict[str, _Merging] = {}
        # Scrape targets whose series carry exported_* labels: Prometheus renamed the exporter's pod labels
        # there, so their plain `pod` is the exporter itself.
        self._renamed: set[str] = set()

    def add(self, readings: Iterable[Reading], order: int = 0) -> None:
        """One answer's readings; `order`: the answer's place among the refresh's queries."""
        merging = self._merging
        for r in readings:
            entry = merging.get(r.gpu.key)
            if entry is None:
                entry = merging[r.gpu.key] = _Merging(r.gpu)
            else:
                entry.gpu = _fill_identity(entry.gpu, r.gpu)
            priority = _priority(r)
            slot = _SLOT[r.metric.quantity]
            if priority < entry.priorities[slot]:
                entry.priorities[slot] = priority
                entry.values[slot] = r.value
            if r.pod is None or r.pod_spelling is None:
                continue
            if r.pod_spelling == "plain":
                if entry.plain is None:
                    entry.plain = []
                entry.plain.append((order, r.scrape_instance, r.pod))
                continue
            if r.pod_spelling == "exported" and r.scrape_instance:
                self._renamed.add(r.scrape_instance)
            rank = _SPELLING_RANK[r.pod_spelling]
            if entry.pod is None or (rank, order) < entry.pod[:2]:
                entry.pod = (rank, order, r.pod)

    def samples(self) -> tuple[GpuSample, ...]:
        return tuple(_to_sample(m, m.pod_ref(self._renamed)) for m in self._merging.values())


def merge_readings(readings: Iterable[Reading]) -> tuple[GpuSample, ...]:
    """Join readings of the same GPU (one per quantity) into whole GpuSamples (ReadingsMerger, all at once)."""
    merger = ReadingsMerger()
    merger.add(readings)
    return merger.samples()


def _fill_identity(have: GpuIdentity, other: GpuIdentity) -> GpuIdentity:
    if (have.uuid or not other.uuid) and (have.model or not other.model) and (have.mig_profile or not other.mig_profile):
        return have
    return GpuIdentity(
        hostname=have.hostname,
        index=have.index,
        uuid=have.uuid or other.uuid,
        model=have.model or other.model,
        mig_profile=have.mig_profile or other.mig_profile,
        mig_instance=have.mig_instance,
    )


def _to_sample(m: _Merging, pod: PodRef | None) -> GpuSample:
    value = m.value
    used, free, total = value(Quantity.FB_USED), value(Quantity.FB_FREE), value(Quantity.FB_TOTAL)
    if free is None and used is not None and total is not None:
        free = max(total - used, 0.0)
    xid = value(Quantity.XID)
    util = m.priorities[_SLOT[Quantity.UTIL]]
    return GpuSample(
        hostname=m.gpu.hostname,
        index=m.gpu.index,
        uuid=m.gpu.uuid,
        model=m.gpu.model,
        mig_profile=m.gpu.mig_profile,
        mig_instance=m.gpu.mig_instance,
        pod=pod,
        util_pct=value(Quantity.UTIL),
        mem_used_mib=used,
        mem_free_mib=free,
        temp_c=value(Quantity.TEMP),
        power_w=value(Quantity.POWER),
        xid=None if xid is None else int(xid),
        util_metric=None if util == _NO_READING else METRICS[util % len(METRICS)].name,  # see _priority
    )
