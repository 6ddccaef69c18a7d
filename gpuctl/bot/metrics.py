"""The bot's own metrics, served at /metrics in Prometheus's text format (0.0.4).

    gpuctl_bot_requests_total{command, outcome}   /gpu commands and button clicks, by how they ended
    gpuctl_bot_ack_seconds{kind}                   time from a Slack request arriving to its HTTP answer
    gpuctl_bot_alerts_total{outcome}               Alertmanager alerts: posted, repeats, resolved, unmatched,
                                                   failed, rejected (bodies refused)
    gpuctl_bot_duplicates_total                    Slack deliveries answered without acting (retries, repeats)
    gpuctl_bot_runs_total{source, outcome}         playbook runs the bot asked the engine for, by where they
                                                   came from (slack, alert, auto, approval) and how that ended:
                                                   succeeded, failed, awaiting_approval, approved, rejected,
                                                   denied (policy or RBAC), refused (kill switch, locked,
                                                   stale, blocked), duplicate, started (auto), proposed
                                                   (auto that needs approval), over_budget, error

Small and dependency-free: four counters and one histogram, owned by the bot
(no process-global registry), counted on the main loop only: the acks of the
front door process arrive there with each request's Tally (gpuctl.bot.app).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence

ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


def _label_text(labels: Labels) -> str:
    if not labels:
        return ""
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


class Counter:
    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple((n, labels[n]) for n in self.label_names)
        self.values[key] += amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple((n, labels[n]) for n in self.label_names), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        if not self.label_names and not self.values:
            lines.append(f"{self.name} 0")
        lines += [f"{self.name}{_label_text(k)} {_number(v)}" for k, v in sorted(self.values.items())]
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = (), buckets: Sequence[float] = ACK_BUCKETS) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self.buckets = tuple(sorted(buckets))
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, **labels: str) -> None:
        key = tuple((n, labels[n]) for n in self.label_names)
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[key] += value

    def count(self, **labels: str) -> int:
        return sum(self.counts.get(tuple((n, labels[n]) for n in self.label_names), []))

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, counts in sorted(self.counts.items()):
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts):
                running += n
                lines.append(f"{self.name}_bucket{_label_text((*key, ('le', _number(bound))))} {running}")
            lines.append(f"{self.name}_sum{_label_text(key)} {_number(self.sums[key])}")
            lines.append(f"{self.name}_count{_label_text(key)} {running}")
        return lines


class BotMetrics:
    def __init__(self) -> None:
        self.requests = Counter("gpuctl_bot_requests_total", "Slash commands and button clicks by command and outcome.",
                                ("command", "outcome"))  # fmt: skip
        self.ack_seconds = Histogram("gpuctl_bot_ack_seconds", "Seconds from a Slack request arriving to its HTTP answer.",
                                     ("kind",))  # fmt: skip
        self.alerts = Counter("gpuctl_bot_alerts_total", "Alertmanager alerts by what the bot did with them.", ("outcome",))
        self.duplicates = Counter("gpuctl_bot_duplicates_total", "Slack deliveries answered without acting again.")
        self.runs = Counter("gpuctl_bot_runs_total", "Playbook runs the bot asked the engine for, by source and outcome.",
                            ("source", "outcome"))  # fmt: skip

    def render(self) -> str:
        families = (self.requests, self.ack_seconds, self.alerts, self.duplicates, self.runs)
        return "\n".join(line for family in families for line in family.render()) + "\n"
