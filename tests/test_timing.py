"""The interval-aware timer: exact order-statistic intervals, the stopping rule (width or budget), the CPU
clock leaving preemption out, the noise note, and time_runners keeping its interface. Every runner is
scripted on a fake clock (timing_machine): no test depends on how fast this machine is."""

import math

import numpy as np
import pytest
from timing_machine import Machine

from slimkit.report.intervals import Interval, median_interval, order_rank
from slimkit.report.timing import Precision, measure, time_runners


@pytest.mark.parametrize("n, k", [(5, 0), (6, 1), (10, 2), (20, 6), (100, 40)])
def test_order_rank_is_the_binomial_quantile(n, k):
    below = lambda j: sum(math.comb(n, i) for i in range(j)) / 2 ** n  # noqa: E731  P(B < j)
    assert order_rank(n) == k
    assert below(k) <= 0.025 < below(k + 1)


def test_median_interval_covers_the_true_median_95_percent_of_the_time():
    rng = np.random.RandomState(0)
    draws = [rng.lognormal(0.0, 0.5, size=31) for _ in range(2000)]  # true median 1.0
    covered = np.mean([median_interval(d)[1] <= 1.0 <= median_interval(d)[2] for d in draws])
    assert 0.94 <= covered <= 0.985
    value, low, high = median_interval([3.0, 1.0, 2.0])  # too few rounds for 95 %: all of them
    assert (value, low, high) == (2.0, 1.0, 3.0)


def test_the_timer_stops_once_the_ratio_interval_is_narrow_enough():
    machine = Machine(noise=0.05)
    runners = {"big": machine.runner(10.0), "small": machine.runner(5.0)}
    found = measure(runners, [("small", "big")], Precision(warmup=2, width=0.04, budget=1e6), machine.clock())
    within = found.interval("small", "big")  # what the stopping rule narrows: this run's rounds
    assert found.converged and within.width <= 0.04 and within.contains(0.5)
    assert found.rounds >= Precision().min_rounds and found.noise_note() is None
    narrower = measure({"big": machine.runner(10.0), "small": machine.runner(5.0)}, [("small", "big")],
                       Precision(warmup=2, width=0.01, budget=1e6), machine.clock())
    assert narrower.converged and narrower.rounds > 4 * found.rounds  # a 4x narrower interval: ~16x the rounds


def test_every_turn_starts_with_an_untimed_rewarm_run():
    machine = Machine()
    runners = {"a": machine.runner(1.0, "a"), "b": machine.runner(2.0, "b")}
    found = measure(runners, None, Precision(warmup=3, calls=2, rewarm=1, min_rounds=5, max_rounds=5),
                    machine.clock())
    assert found.rounds == 5 and machine.calls == {"a": 3 + 5 * 3, "b": 3 + 5 * 3}
    assert len(found.runs["a"]) == 10 and found.timing("b").median == pytest.approx(2.0)


def test_a_budget_that_runs_out_gives_a_noise_note_with_the_interval():
    machine = Machine(noise=0.6)
    runners = {"big": machine.runner(10.0), "small": machine.runner(5.0)}
    found = measure(runners, [("small", "big")], Precision(warmup=0, width=0.01, budget=2.0), machine.clock())
    widest = found.interval("small", "big").width
    assert not found.converged and found.seconds >= 2.0 and widest > 0.01
    assert found.rounds == pytest.approx(2.0 / (2 * 15e-3), rel=0.15)  # each round: rewarm + timed run of both
    note = found.noise_note()
    assert "noisy" in note and f"{widest:.1%}" in note and "1%" in note


def test_the_cpu_clock_leaves_out_the_time_other_work_held_the_core():
    def timed(clock):
        machine = Machine(noise=0.01, preempt=0.5, seed=1)
        runners = {"big": machine.runner(10.0), "small": machine.runner(5.0)}
        return measure(runners, [("small", "big")], Precision(warmup=0, width=0.02, budget=5.0, clock=clock),
                       machine.clock())

    cpu, wall = timed("cpu"), timed("wall")
    assert cpu.converged and cpu.ratio("small", "big").contains(0.5)
    assert not wall.converged and wall.rounds > 4 * cpu.rounds and wall.interval("small", "big").width > 0.02
    assert 0.45 < wall.preempted < 0.55  # half the runs were preempted, as scripted
    assert cpu.timing("big").wall_median > cpu.timing("big").median


def test_time_runners_keeps_its_fixed_count_interface():
    machine = Machine()
    clock = machine.clock()
    runners = {"a": machine.runner(1.0, "a"), "b": machine.runner(3.0, "b")}
    timings = time_runners(runners, warmup=2, runs=6, rounds=3, clock=clock.wall)
    assert machine.calls == {"a": 8, "b": 8}  # 2 warm-up + 6 timed, no re-warm runs
    assert timings["b"].median == pytest.approx(3.0) and timings["b"].samples == 6
    assert set(timings["a"].to_dict()) >= {"median_ms", "p10_ms", "p90_ms", "samples"}


def test_intervals_round_trip_and_read_as_text():
    ratio = Interval(0.5, 0.49, 0.51, 40)
    assert Interval.from_dict(ratio.to_dict()) == ratio
    assert ratio.text(2, "x") == "0.50x (0.49-0.51)" and ratio.width == pytest.approx(0.04)


def test_compare_must_name_timed_runners():
    with pytest.raises(KeyError, match="not timed"):
        measure({"a": lambda: None}, [("a", "b")], Precision(warmup=0, min_rounds=1, max_rounds=1))


def test_a_reported_ratio_is_widened_by_the_drift_between_runs_and_the_stopping_rule_is_not():
    machine = Machine(noise=0.05)
    runners = {"big": machine.runner(10.0), "small": machine.runner(5.0)}
    found = measure(runners, [("small", "big")], Precision(warmup=2, width=0.04, budget=1e6, drift=0.03),
                    machine.clock())
    within, reported = found.interval("small", "big"), found.ratio("small", "big")
    assert found.converged and within.width <= 0.04  # a 6 %-wide drift alone would never converge
    assert reported.value == within.value
    assert reported.low == pytest.approx(within.low / 1.03) and reported.high == pytest.approx(within.high * 1.03)
    none = measure({"big": machine.runner(10.0), "small": machine.runner(5.0)}, [("small", "big")],
                   Precision(warmup=2, width=0.04, budget=1e6, drift=0.0), machine.clock())
    assert none.ratio("small", "big") == none.interval("small", "big")
    assert "widened by +-3%" in found.precision.describe() and "widened" not in none.precision.describe()
    with pytest.raises(ValueError, match="drift"):
        Precision(drift=1.5)
