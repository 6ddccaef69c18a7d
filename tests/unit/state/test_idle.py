"""IdleClock properties: it runs on sample time, resets on any busy sample, new holder or unmeasured gap,
forgets after grace, and counts only measured time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gpuctl.state.idle import IdleClock

from .factories import at, sample

THRESHOLD = 5.0
WINDOW = 600.0
GRACE = 300.0

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
    """idle_for == from the first to the latest reading of the current under-threshold run with the
    same holder and no gap over the grace period (steps reach 400 s, over GRACE)."""
    c = IdleClock(threshold_pct=THRESHOLD, window_s=WINDOW, grace_s=GRACE)
    t = 0.0
    since: float | None = None
    last = 0.0  # time of the latest utilisation reading
    holder: str | None = None
    known = False

    def gap(now: float) -> bool:
        return (at(now) - at(last)).total_seconds() > GRACE  # the clock's own datetime arithmetic

    for dt, util, who in seq:
        t += dt
        c.observe(at(t), [sample("n1", 0, util, who)])
        if util is None:
            if known and gap(t):
                known = False  # no reading for longer than the grace period: forgotten
            elif known and who != holder:
                holder, since = who, None
        else:
            if util >= THRESHOLD:
                since = None
            elif not known or since is None or holder != who or gap(t):
                since = t
            holder, last, known = who, t, True
        expected = None if not known or since is None else last - since
        got = c.idle_for("n1/0")
        assert (got is None) == (expected is None)
        if got is not None:
            assert abs(got - expected) < 1e-5  # type: ignore[operator]
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
    """Neither busy nor idle evidence: the streak survives it, but its time is not counted as idle."""
    c = clock()
    c.observe(at(0), [sample("n1", 0, 0.0, "ml/a")])
    c.observe(at(WINDOW), [sample("n1", 0, None, "ml/a")])
    assert c.idle_for("n1/0") == 0 and not c.is_idle("n1/0")  # (counted WINDOW, and idle, before)
    c.observe(at(WINDOW + 15), [sample("n1", 0, 1.0, "ml/a")])
    assert c.idle_for("n1/0") == WINDOW + 15  # a reading under the threshold again, within the grace period


def test_a_gap_in_the_metrics_breaks_the_streak() -> None:
    """Samples at 0 s, 15 s and 40 min: nobody measured the GPU for 39 minutes, so it is not idle for 40."""
    c = IdleClock(threshold_pct=THRESHOLD, window_s=30 * 60, grace_s=300)
    for t in (0, 15, 40 * 60):
        c.observe(at(t), [sample("n1", 0, 0.0, "ml/a")])
    assert c.idle_for("n1/0") == 0 and not c.is_idle("n1/0")  # a new streak starts at the sample after the gap
    c.observe(at(40 * 60 + 15), [sample("n1", 0, 0.0, "ml/a")])
    assert c.idle_for("n1/0") == 15


def test_a_gap_of_exactly_the_grace_period_is_bridged() -> None:
    c = IdleClock(threshold_pct=THRESHOLD, window_s=WINDOW, grace_s=300)
    for t in (0, 300, 600):
        c.observe(at(t), [sample("n1", 0, 0.0, "ml/a")])
    assert c.is_idle("n1/0") and c.idle_for("n1/0") == 600


def test_readings_without_utilisation_for_longer_than_grace_break_the_streak() -> None:
    """The GPU stays in the batches (memory, temperature) but its utilisation reading is missing."""
    c = IdleClock(threshold_pct=THRESHOLD, window_s=WINDOW, grace_s=300)
    c.observe(at(0), [sample("n1", 0, 0.0, "ml/a")])
    for t in range(30, 601, 30):
        c.observe(at(t), [sample("n1", 0, None, "ml/a")])
    c.observe(at(630), [sample("n1", 0, 0.0, "ml/a")])
    assert c.idle_for("n1/0") == 0 and not c.is_idle("n1/0")


def test_unmeasured_change_of_hands_restarts_the_streak() -> None:
    c = clock()
    c.observe(at(0), [sample("n1", 0, 0.0, "ml/a")])
    c.observe(at(WINDOW), [sample("n1", 0, 0.0, "ml/a")])
    assert c.is_idle("n1/0")
    c.observe(at(WINDOW + 15), [sample("n1", 0, None, "ml/b")])  # a new pod, no utilisation yet
    assert c.idle_for("n1/0") is None and not c.is_idle("n1/0")
    c.observe(at(WINDOW + 30), [sample("n1", 0, 0.0, "ml/b")])
    assert c.idle_for("n1/0") == 0


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


def test_history_that_covers_a_gap_restores_the_streak() -> None:
    """After an outage the streak restarts; history evaluated after it (vouching for the gap) may move it back."""
    c = IdleClock(threshold_pct=THRESHOLD, window_s=30 * 60, grace_s=300)
    for t in (0, 15, 40 * 60):
        c.observe(at(t), [sample("n1", 0, 0.0, "ml/a")])
    assert c.idle_for("n1/0") == 0
    c.backfill({"n1/0": at(0)})
    assert c.idle_for("n1/0") == 40 * 60 and c.is_idle("n1/0")


def test_history_for_an_unseen_gpu_does_not_reach_across_a_gap() -> None:
    """Pending history seeds the next batch only when that batch follows within the grace period."""
    c = IdleClock(threshold_pct=THRESHOLD, window_s=WINDOW, grace_s=300)
    c.observe(at(1000), [sample("n1", 1, 50.0, "ml/b")])
    c.backfill({"n1/0": at(0)})  # evaluated at about 1000 s; says nothing about what follows
    c.observe(at(1000 + 301), [sample("n1", 0, 0.0, "ml/a")])
    assert c.idle_for("n1/0") == 0 and not c.is_idle("n1/0")

    c.backfill({"n1/2": at(0)})
    c.observe(at(1000 + 301 + 15), [sample("n1", 2, 0.0, "ml/a")])
    assert c.idle_for("n1/2") == 1316 and c.is_idle("n1/2")
