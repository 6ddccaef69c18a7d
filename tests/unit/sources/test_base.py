"""Backoff: exponential, capped, jittered into [delay/2, delay], reset after success."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from gpuctl.sources.base import Backoff, describe_crash


@given(st.integers(0, 2**32), st.floats(0.01, 5), st.floats(5, 120), st.integers(1, 30))
def test_delays_grow_within_jitter_and_cap(seed: int, base: float, cap: float, n: int) -> None:
    backoff = Backoff(base=base, cap=cap, rng=random.Random(seed))
    for attempt in range(n):
        nominal = min(cap, base * 2**attempt)
        assert nominal / 2 <= backoff.next() <= nominal


def test_reset_starts_over() -> None:
    backoff = Backoff(base=1, cap=100, rng=random.Random(1))
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.next() <= 1


def test_a_crash_is_one_line_with_its_type_and_a_task_groups_first_error() -> None:
    assert describe_crash(KeyError("name")) == "'name' (KeyError)"
    assert describe_crash(RuntimeError("two\n  lines")) == "two lines (RuntimeError)"
    assert describe_crash(AssertionError()) == "AssertionError"
    group = ExceptionGroup("unhandled errors in a TaskGroup", [ExceptionGroup("inner", [ValueError("bad quantity")])])
    assert describe_crash(group) == "bad quantity (ValueError)"
