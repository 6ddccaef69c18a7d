"""Heatmap metrics and their colours.

One sequential ramp (dark blue -> teal -> green -> yellow -> orange) reads on
dark and light terminals alike and leaves magenta and red free for the two
states that must jump out: idle-but-allocated GPUs (magenta) and XID errors
(red). Colours are precomputed Rich styles: the heatmap asks for thousands per
frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from rich.color import Color
from rich.style import Style

from gpuctl.model import Gpu

RAMP: tuple[str, ...] = (
    "#1f2f6b",
    "#21508f",
    "#1f7a8c",
    "#22a07a",
    "#5cbf4a",
    "#b5cf34",
    "#f2c12e",
    "#f28b1f",
)
IDLE_BG = "#d33fd3"
XID_BG = "#e0262b"
NO_DATA_BG = "#4a4a4a"


class Metric(str, Enum):
    UTIL = "util"
    MEMORY = "memory"
    TEMPERATURE = "temperature"
    POWER = "power"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    label: str
    unit: str
    low: float
    high: float


SPECS: dict[Metric, MetricSpec] = {
    Metric.UTIL: MetricSpec("utilisation", "%", 0, 100),
    Metric.MEMORY: MetricSpec("memory used", "%", 0, 100),
    Metric.TEMPERATURE: MetricSpec("temperature", "°C", 30, 90),
    Metric.POWER: MetricSpec("power", "W", 0, 700),
}


def next_metric(metric: Metric) -> Metric:
    order = list(Metric)
    return order[(order.index(metric) + 1) % len(order)]


# The Gpu reading (gpuctl.query.fleet.READINGS) each metric shows.
METRIC_READING: dict[Metric, str] = {
    Metric.UTIL: "util_pct",
    Metric.MEMORY: "mem_used_pct",
    Metric.TEMPERATURE: "temp_c",
    Metric.POWER: "power_w",
}


def metric_value(gpu: Gpu, metric: Metric) -> float | None:
    if metric is Metric.UTIL:
        return gpu.util_pct
    if metric is Metric.MEMORY:
        return gpu.mem_used_pct
    if metric is Metric.TEMPERATURE:
        return gpu.temp_c
    return gpu.power_w


def bucket(value: float, spec: MetricSpec) -> int:
    span = spec.high - spec.low
    frac = 0.0 if span <= 0 else (value - spec.low) / span
    return min(len(RAMP) - 1, max(0, int(frac * len(RAMP))))


def _ink_for(bg: str) -> str:
    """Black or white, whichever reads on the background."""
    r, g, b = Color.parse(bg).get_truecolor()
    return "#000000" if (0.299 * r + 0.587 * g + 0.114 * b) > 140 else "#ffffff"


@lru_cache(maxsize=64)
def cell_style(bg: str, selected: bool = False) -> Style:
    ink = _ink_for(bg)
    if selected:
        return Style(color=bg, bgcolor=ink, bold=True)
    return Style(color=ink, bgcolor=bg, bold=True)


def legend_ramp(metric: Metric) -> list[tuple[str, str]]:
    """(label, colour) pairs for the legend: the low and high ends plus each step."""
    spec = SPECS[metric]
    step = (spec.high - spec.low) / len(RAMP)
    return [(f"{spec.low + i * step:.0f}", c) for i, c in enumerate(RAMP)]
