"""IdleClock properties: it runs on sample time, resets on any busy sample or new holder, forgets after grace."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gpuctl.state.idle import IdleClock

from .factories import at, sample

THRESHOLD = 5.0
WINDOW = 600.0

steps = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=400, allow_nan=False),  # seconds since previous batch
        st.one_of(st.none(), st.floats(min_value=0, max_value=100, allow_nan=False)),  # utilisation
        st.sampled_from([None, "ml/a", "ml/b"]),  # holder
    ),
    min_size=1,
    max_size=40,
)


def clock() -> IdleClock:
    return IdleClock(threshold_pct=THRESHOLD, window_s=WINDOW, grace_s=10_000)


@given(steps)
def test_matches_reference_model(seq: list[tuple[float, float | None, str | None]]) -> None:
    """idle_for == time since the start of the current under-threshold run with the same holder."""
    c = clock()
    t = 0.0
    since: float | None = None
    holder: str | None = None
    known = False
    for dt, util, who in seq:
        t += dt
        c.observe(at(t), [sample("n1", 0, util, who)])
        if util is not None:
            if util >= THRESHOLD:
                since = None
            elif not known or since is None or holder != who:
                since = t
            holder, known = who, True
        expected = None if since is None else t - since
        got = c.idle_for("n1/0")
        assert (got is None) == (expected is None)
        if got is not None:
            assert abs(got - expected) < 1e-6  # type: ignore[operator]
            assert c.is_idle("n1/0") == (holder is not None and got >= WINDOW)
        else:
            assert not c.is_idle("n1/0")


@given(st.lists(st.floats(min_value=0, max_value=4.99), min_size=1, max_size=30), st.floats(1, 300))
def test_monotonic_while_under_threshold(utils: list[float], dt: float) -> None:
    c = clock()
    previous = -1.0
    for i, util in enumerate(utils):
        c.observe(at(i * dt), [sample("n1", 0, util, "ml/a")])
        now = c.idle_for("n1/0")
        assert now is not None and now >= previous
        previous = now


@given(steps, st.floats(min_value=THRESHOLD, max_value=100))
def test_any_busy_sample_resets(seq: list[tuple[float, float | None, str | None]], busy: float) -> None:
    c = clock()
    t = 0.0
    for dt, util, who in seq:
        t += dt
        c.observe(at(t), [sample("n1", 0, util, who)])
    c.observe(at(t + 1), [sample("n1", 0, busy, "ml/a")])
    assert c.idle_for("n1/0") is None
    assert not c.is_idle("n1/0")


def test_idle_needs_a_holder_and_the_whole_window() -> None:
    c = clock()
    c.observe(at(0), [sample("n1", 0, 1.0, "ml/a"), sample("n1", 1, 1.0)])
    c.observe(at(WINDOW - 1), [sample("n1", 0, 1.0, "ml/a"), sample("n1", 1, 1.0)])
    assert not c.is_idle("n1/0")
    c.observe(at(WINDOW), [sample("n1", 0, 1.0, "ml/a"), sample("n1", 1, 1.0)])
    assert c.is_idle("n1/0")
    assert c.idle_for("n1/1") == WINDOW and not c.is_idle("n1/1")  # under threshold but nobody holds it


def test_new_holder_restarts_the_window() -> None:
    c = clock()
    c.observe(at(0), [sample("n1", 0, 0.0, "ml/a")])
    c.observe(at(WINDOW), [sample("n1", 0, 0.0, "ml/a")])
    assert c.is_idle("n1/0")
    c.observe(at(WINDOW + 10), [sample("n1", 0, 0.0, "ml/b")])
    assert c.idle_for("n1/0") == 0 and not c.is_idle("n1/0")


def test_out_of_order_batch_is_ignored() -> None:
    c = clock()
    c.observe(at(100), [sample("n1", 0, 0.0, "ml/a")])
    assert not c.observe(at(50), [sample("n1", 0, 90.0, "ml/a")])
    assert c.idle_for("n1/0") == 0 and c.at == at(100)


def test_missing_gpu_keeps_its_clock_only_for_the_grace_period() -> None:
    c = IdleClock(threshold_pct=THRESHOLD, window_s=WINDOW, grace_s=120)
    c.observe(at(0), [sample("n1", 0, 0.0, "ml/a"), sample("n1", 1, 0.0, "ml/a")])
    c.observe(at(100), [sample("n1", 1, 0.0, "ml/a")])  # GPU 0 missed one scrape
    c.observe(at(110), [sample("n1", 0, 0.0, "ml/a"), sample("n1", 1, 0.0, "ml/a")])
    assert c.idle_for("n1/0") == 110  # clock kept
    c.observe(at(300), [sample("n1", 1, 0.0, "ml/a")])  # GPU 0 gone for 190 s > grace
    assert c.idle_for("n1/0") is None and len(c) == 1
    c.observe(at(310), [sample("n1", 0, 0.0, "ml/a")])
    assert c.idle_for("n1/0") == 0  # starts over


def test_sample_without_utilisation_is_no_evidence() -> None:
    c = clock()
    c.observe(at(0), [sample("n1", 0, 0.0, "ml/a")])
    c.observe(at(60), [sample("n1", 0, None, "ml/a")])
    assert c.idle_for("n1/0") == 60


@given(
    st.floats(min_value=0, max_value=5000),  # how far back history says it was idle
    st.one_of(st.none(), st.floats(min_value=0, max_value=100)),  # utilisation of the first live sample
    st.booleans(),  # backfill before (True) or after (False) the first batch
)
def test_backfill_only_moves_clocks_earlier_and_never_for_busy_gpus(back: float, util: float | None, before: bool) -> None:
    c = clock()
    t = 10_000.0
    history = {"n1/0": at(t - back)}
    if before:
        c.backfill(history)
    c.observe(at(t), [sample("n1", 0, util, "ml/a")])
    if not before:
        c.backfill(history)
    got = c.idle_for("n1/0")
    if util is None or util >= THRESHOLD:
        assert got is None
    else:
        assert got is not None and abs(got - back) < 1e-5  # datetimes keep microseconds


def test_backfill_survives_a_restart() -> None:
    """A fresh clock seeded from history reports the same idle GPU as the one that ran all along."""
    history = {"n1/0": at(0)}
    c = clock()
    c.backfill(history)
    c.observe(at(WINDOW + 5), [sample("n1", 0, 0.5, "ml/a")])
    assert c.is_idle("n1/0") and c.idle_for("n1/0") == WINDOW + 5
