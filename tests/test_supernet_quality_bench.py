"""benchmarks/supernet_quality.py: its bootstrap interval, its choice of archs, a quick run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_benchmarks import _load

import search_spaces

pytestmark = pytest.mark.usefixtures("one_thread")

quality = _load("supernet_quality")


def test_bootstrap_ci_of_perfectly_agreeing_rankings_is_one() -> None:
    scores = [float(x) for x in range(12)]
    for rankings in ([scores, scores], [scores, scores, scores]):  # tau-b of tied resamples:
        low, high = quality.bootstrap_tau_ci(rankings, resamples=300)  # 1 to rounding
        assert (low, high) == (pytest.approx(1.0, abs=1e-12), pytest.approx(1.0, abs=1e-12))


def test_bootstrap_ci_holds_the_estimate_and_is_seeded() -> None:
    rng = np.random.default_rng(7)
    truth = rng.normal(size=15)
    rankings = [truth + rng.normal(scale=0.8, size=15) for _ in range(2)]
    tau = quality.mean_pairwise_tau(rankings)
    low, high = quality.bootstrap_tau_ci(rankings, resamples=500, seed=3)
    assert -1.0 <= low <= tau <= high <= 1.0
    assert low < high
    assert quality.bootstrap_tau_ci(rankings, resamples=500, seed=3) == (low, high)
    assert quality.bootstrap_tau_ci(rankings, resamples=500, seed=4) != (low, high)


@pytest.mark.parametrize("name", ["ofa_mbv3", "bignas"])
def test_spread_archs_span_the_macs_range_from_min_to_max(name: str) -> None:
    space = search_spaces.get(name, preset="tiny", in_channels=1)
    rng = np.random.default_rng(0)
    archs = quality.spread_archs(space, 12, rng, pool=500)
    macs = space.complexity_batch(archs)[0]
    ends = space.complexity_batch([space.sample(rng, "min"), space.sample(rng, "max")])[0]
    assert len(archs) == 12
    assert macs[0] == ends[0] and macs[-1] == ends[1]
    assert np.all(np.diff(macs) > 0)  # sorted, distinct
    # evenly spread: no gap much wider than an even step (random archs alone left half the
    # range empty below the max)
    even = (macs[-1] - macs[0]) / 11
    assert np.diff(macs).max() <= 1.5 * even


@pytest.mark.slow
def test_quick_run_prints_both_tables(
    fashion_mnist_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quality.main(["--quick", "--space", "ofa_mbv3", "--samplers", "sandwich", "uniform"])
    out = capsys.readouterr().out
    assert "load average at start:" in out and "load average at end:" in out
    assert "fashion_mnist: train 400, val 200 images" in out
    assert "| space | archs | seeds | epochs | self-tau [95% CI] | arch std / seed std |" in out
    header = "| space | sampler | train s | max % (gap) | min % (gap) | mean gap | tau [95% CI] |"
    assert header in out
    (reference,) = [line for line in out.splitlines() if line.startswith("| ofa_mbv3 | 3 |")]
    rows = [line for line in out.splitlines() if line.startswith("| ofa_mbv3 | ")][1:]
    assert [row.split(" | ")[1] for row in rows] == ["sandwich", "uniform"]
    taus = [reference.split(" | ")[4]] + [row.split(" | ")[6] for row in rows]
    for cell in taus:  # "tau [low, high]"
        values = [float(x) for x in cell.replace("[", "").replace(",", "").rstrip("]").split()]
        assert all(-1.0 <= v <= 1.0 for v in values), cell
    for row in rows:
        assert -1.0 <= float(row.rstrip(" |").split(" | ")[-1]) <= 1.0  # spearman
