"""The one rule that makes a shown front and a best pick (``workers.results``): measurements
only, the budget judged on measured latency where it was timed, dominance on the two axes a
user sees. The searching stage, the REST API and specialisation all call it."""

from __future__ import annotations

from workers.results import (
    LatencyResult,
    SubnetResult,
    best_member,
    front_objectives,
    measured_front,
    shown_latency_ms,
    within_budget,
)

DEVICE = "host-cpu-torch"


def subnet(
    name: str,
    predicted: float | None,
    measured: float | None,
    ms: float,
    *,
    timed: float | None = None,
    macs: int = 1000,
) -> SubnetResult:
    return SubnetResult(
        arch_id=name,
        arch={"name": name},
        resolution=32,
        macs=macs,
        params=10,
        predicted_accuracy=predicted,
        measured_accuracy=measured,
        latencies={DEVICE: LatencyResult(predicted_ms=ms, measured_ms=timed)},
    )


def ids(subnets: list[SubnetResult]) -> list[str]:
    return [s.arch_id for s in subnets]


def test_the_highest_prediction_is_not_picked_once_measured_lower() -> None:
    searched = [
        subnet("favourite", 97.2, 94.0, 2.0, timed=2.1),  # the search's favourite
        subnet("steady", 95.0, 96.0, 2.3, timed=2.4),
        subnet("quick", 90.0, 93.0, 1.5, timed=1.6),
        subnet("slow-and-worse", 93.0, 92.5, 1.9, timed=1.8),  # beaten by quick
        subnet("never-measured", 98.0, None, 1.0),  # predicted best of all, never measured
    ]
    front = measured_front(searched, DEVICE, {"latency_ms": 3.0})
    assert ids(front) == ["steady", "favourite", "quick"]  # recomputed on measured values
    assert best_member(searched, DEVICE, {"latency_ms": 3.0}) is searched[1]
    # a tighter budget: the pick is the most accurate *measured* subnet that fits
    assert ids(measured_front(searched, DEVICE, {"latency_ms": 2.2})) == ["favourite", "quick"]


def test_the_budget_is_judged_on_measured_latency_where_timed() -> None:
    # the table says 1.9 ms; timed whole it took 2.4 ms: over a 2 ms budget
    over = subnet("over", 96.0, 96.0, 1.9, timed=2.4)
    under = subnet("under", 92.0, 93.0, 2.1)  # never timed (not this host): the table's figure
    assert shown_latency_ms(over, DEVICE) == 2.4 and shown_latency_ms(under, DEVICE) == 2.1
    assert not within_budget(over, DEVICE, {"latency_ms": 2.0})
    assert not within_budget(under, DEVICE, {"latency_ms": 2.0})
    assert best_member([over, under], DEVICE, {"latency_ms": 2.0}) is None
    assert best_member([over, under], DEVICE, {"latency_ms": 2.2}) is under
    assert best_member([over, under], "elsewhere", None) is None  # no latency there


def test_a_macs_budget_front_trades_accuracy_against_macs() -> None:
    assert front_objectives(DEVICE, {"macs": 5000}) == ["accuracy", "macs"]
    assert front_objectives(DEVICE, None) == ["accuracy", f"latency:{DEVICE}"]
    small = subnet("small", 90.0, 91.0, 3.0, macs=1000)
    big = subnet("big", 95.0, 95.0, 1.0, macs=4000)
    huge = subnet("huge", 97.0, 97.0, 0.5, macs=9000)  # beats both on latency; over the budget
    front = measured_front([small, big, huge], DEVICE, {"macs": 5000})
    assert ids(front) == ["big", "small"]  # not dominated in (accuracy, MACs)
    assert ids(measured_front([small, big, huge], DEVICE, None)) == ["huge"]


def test_ties_keep_the_cheaper_first_and_no_front_without_measurements() -> None:
    a = subnet("a", None, 95.0, 2.0, timed=2.0)
    b = subnet("b", None, 95.0, 2.0, timed=1.5)
    assert ids(measured_front([a, b], DEVICE, None)) == ["b"]
    assert measured_front([subnet("p", 99.0, None, 1.0)], DEVICE, None) == []
