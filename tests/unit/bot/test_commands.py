"""The `/gpu` parser: every command, every kind of bad input, and arbitrary text never raising."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.bot import commands as c
from gpuctl.query.filter import Filter


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", c.Help()),
        ("   ", c.Help()),
        ("help", c.Help()),
        ("HELP idle", c.Help("idle")),
        ("status", c.Status()),
        ("Status", c.Status()),
        ("idle", c.Idle()),
        ("idle team-a", c.Idle(Filter.parse("team-a"))),
        ("idle ns:team-a pool:a100", c.Idle(Filter.parse("ns:team-a pool:a100"))),
        ("quota", c.Quota()),
        ("quota team-b", c.Quota("team-b")),
        ("pools", c.Pools()),
        ("node gpu-node-1.example", c.NodeInfo("gpu-node-1.example")),
        ("pod team-a/trainer-0", c.PodInfo("team-a", "trainer-0")),
        ("pod team-a trainer-0", c.PodInfo("team-a", "trainer-0")),
        ("top", c.Top()),
        ("top 25", c.Top(25)),
        ("top 5 pool:h100", c.Top(5, Filter.parse("pool:h100"))),
        ("top pool:h100", c.Top(c.DEFAULT_TOP, Filter.parse("pool:h100"))),
        ("runs", c.Runs()),
        ("run reclaim-idle-gpus", c.Run("reclaim-idle-gpus", {})),
        ("run reclaim-idle-gpus namespace=team-a idle_for=2h", c.Run("reclaim-idle-gpus", {"namespace": "team-a", "idle_for": "2h"})),
        ("audit", c.Audit()),
        ("audit reclaim-idle-gpus-7f3a", c.Audit("reclaim-idle-gpus-7f3a")),
        ("idle\u00a0team-a", c.Idle(Filter.parse("team-a"))),  # a no-break space from a phone keyboard
    ],
)
def test_commands(text: str, expected: object) -> None:
    assert c.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "says", "verb"),
    [
        ("frobnicate", "'frobnicate' is not a /gpu command", None),
        ("status now", "status takes no arguments", "status"),
        ("pools a100", "pools takes no arguments", "pools"),
        ("node", "node takes one node name", "node"),
        ("node GPU_1", "'GPU_1' is not a node name", "node"),
        ("node a b", "node takes one node name", "node"),
        ("pod trainer-0", "pod takes NAMESPACE/NAME", "pod"),
        ("pod a/b/c", "pod takes NAMESPACE/NAME", "pod"),
        ("pod Team/x", "'Team' is not a namespace name", "pod"),
        ("pod team/X_1", "'X_1' is not a pod name", "pod"),
        ("quota a b", "quota takes at most one namespace", "quota"),
        ("quota Team_A", "'Team_A' is not a namespace name", "quota"),
        ("top 0", "top shows 1 to 50 GPUs (got '0')", "top"),
        ("top 51", "top shows 1 to 50 GPUs", "top"),
        ("top 99999999999999999999", "top shows 1 to 50 GPUs", "top"),
        ("idle <!channel>", "'<!channel>' is not a filter term", "idle"),
        ("idle &lt;!here&gt;", "'<!here>' is not a filter term", "idle"),  # as Slack encodes it
        ("idle $(reboot)", "is not a filter term", "idle"),
        ("run", "run needs a playbook name", "run"),
        ("run Reclaim", "'Reclaim' is not a playbook name", "run"),
        ("run reclaim-idle-gpus namespace", "'namespace' is not key=value", "run"),
        ("run reclaim-idle-gpus a=1 a=2", "parameter 'a' is given twice", "run"),
        ("audit a b", "audit takes at most one run id", "audit"),
        ("audit ../etc", "'../etc' is not a run id", "audit"),
        ("help me please", "help takes at most one command name", "help"),
        ("help frob", "'frob' is not a /gpu command", "help"),
        ("x" * 1001, "no /gpu command needs more than 1000", None),
    ],
)
def test_problems_say_what_is_wrong(text: str, says: str, verb: str | None) -> None:
    problem = c.parse(text)
    assert isinstance(problem, c.Problem)
    assert says in problem.message and problem.verb == verb


def test_a_long_word_is_shortened_when_quoted_back() -> None:
    problem = c.parse("node " + "a" * 300 + "_")
    assert isinstance(problem, c.Problem) and len(problem.message) < 120


def test_verbs_name_every_command_for_metrics() -> None:
    assert {c.verb_of(c.parse(t)) for t in ("status", "idle", "quota", "pools", "node n", "pod a/b", "top", "runs",
                                            "run p", "audit", "doctor", "help", "nope")} == {*c.USAGE, "invalid"}  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200) | st.lists(st.sampled_from([*c.USAGE, "ns:", "pool:", "=", "/", "&lt;", "10", "a=b", " "]),
                                        max_size=8).map(" ".join))  # fmt: skip
def test_any_text_gives_a_command_or_a_problem(text: str) -> None:
    parsed = c.parse(text)
    assert isinstance(parsed, (*c.READ_ONLY, c.Runs, c.Run, c.Audit, c.Doctor, c.Help, c.Problem))
