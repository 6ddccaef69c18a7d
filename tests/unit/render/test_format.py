from datetime import timedelta

from gpuctl.render.format import age, bar, duration, gpu_count, short_model, sparkline
from tests.tui.factory import T0


def test_duration_picks_the_two_largest_units() -> None:
    assert duration(None) == "—"
    assert duration(42) == "42s"
    assert duration(12 * 60 + 5) == "12m"
    assert duration(3 * 3600 + 20 * 60) == "3h20m"
    assert duration(4 * 86400 + 6 * 3600) == "4d06h"
    assert duration(-5) == "0s"


def test_age_is_measured_against_the_snapshot_time() -> None:
    assert age(T0 - timedelta(minutes=90), T0) == "1h30m"
    assert age(None, T0) == "—"


def test_bar_has_fixed_width_and_clamps() -> None:
    assert bar(0, 10, 8) == "········"
    assert bar(5, 10, 8) == "████····"
    assert bar(15, 10, 8) == "████████"
    assert len(bar(3, 7, 12)) == 12
    assert bar(1, 0, 4) == "····"


def test_sparkline_keeps_the_latest_values_right_aligned() -> None:
    assert sparkline([0, 50, 100], 5) == "  ▁▅█"
    assert sparkline([None, 100], 2) == " █"
    assert sparkline(list(range(100)), 4) == sparkline([96, 97, 98, 99], 4)


def test_gpu_counts_and_models_read_like_people_say_them() -> None:
    assert gpu_count(8, 0) == "8"
    assert gpu_count(0, 3) == "3 MIG"
    assert gpu_count(2, 1) == "2+1 MIG"
    assert gpu_count(0, 0, 3) == "3 slices" and gpu_count(1, 0, 1) == "1+1 slice"
    assert gpu_count(2, 0, replicas=4) == "2 ×4"
    assert short_model("NVIDIA-A100-SXM4-80GB") == "A100-SXM4-80GB"
    assert short_model("Tesla-T4") == "T4"
    assert short_model(None) == "—"
