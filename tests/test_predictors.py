"""Accuracy predictors on a synthetic task, their stored form, and the accuracy dataset built
from a real (quickly trained) supernet by a real local Ray actor pool."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import search_spaces
from nas.data import DatasetSpec, load_dataset
from nas.predictors import (
    PREDICTOR_NAMES,
    AccuracyDataset,
    AutoPredictor,
    GBTPredictor,
    NotFittedError,
    PredictorSpec,
    SupernetAccuracy,
    holdout_report,
    make_predictor,
    predictor_from_bytes,
    predictor_to_bytes,
    rank_correlations,
    score_predictions,
    stratified_subnets,
)
from nas.training import SupernetTrainer, TrainingConfig, load_checkpoint

SPACE = search_spaces.get("ofa_mbv3", preset="tiny")
FAST = {"mlp": {"steps": 300}, "auto": {}, "gbt": {}, "ridge": {}}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task() -> tuple[np.ndarray, np.ndarray]:
    """Accuracy-like targets: log-MACs, per-choice effects, an interaction, and noise."""
    rng = np.random.default_rng(0)
    archs = [SPACE.sample(rng) for _ in range(400)]
    x = SPACE.encode_batch(archs)
    macs = SPACE.complexity_batch(archs)[0]
    effects = rng.normal(0.0, 0.5, x.shape[1])
    y = 75 + 5 * np.log(macs / macs.min()) + x @ effects + 1.5 * x[:, 3] * x[:, 40]
    return x, y + rng.normal(0.0, 0.3, len(y))


@pytest.mark.parametrize("kind", PREDICTOR_NAMES)
def test_predictors_beat_the_mean_on_held_out_subnets(
    kind: str, task: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = task
    report = holdout_report(make_predictor(kind, **FAST[kind]), x, y, test_fraction=0.2, seed=1)
    train = np.ones(len(y), bool)
    test = np.random.default_rng(1).permutation(len(y))[: report.num_test]
    train[test] = False
    mean = score_predictions(
        y[~train], np.full((~train).sum(), y[train].mean()), predictor="mean", num_train=80
    )
    assert (report.num_train, report.num_test) == (320, 80)
    assert report.rmse < 0.6 * mean.rmse
    assert report.mape < mean.mape
    assert report.kendall_tau > 0.6 and report.spearman > 0.8
    assert mean.kendall_tau == 0.0  # a constant ranks nothing


@pytest.mark.parametrize("kind", PREDICTOR_NAMES)
def test_predictors_are_deterministic_and_round_trip_exactly(
    kind: str, task: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = task
    first = make_predictor(kind, seed=3, **FAST[kind]).fit(x[:200], y[:200])
    again = make_predictor(kind, seed=3, **FAST[kind]).fit(x[:200], y[:200])
    np.testing.assert_array_equal(first.predict(x), again.predict(x))
    blob = predictor_to_bytes(first)
    json.loads(blob)  # plain JSON: storable in a database column or a file
    loaded = predictor_from_bytes(blob)
    assert type(loaded) is type(first) and loaded.options() == first.options()
    np.testing.assert_array_equal(loaded.predict(x), first.predict(x))
    assert first.predict(x).dtype == np.float64 and first.predict(x).shape == (len(x),)


def test_tree_walk_equals_scikit_learn(task: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y = task
    ours = GBTPredictor(seed=0).fit(x, y)
    options = ours.options()
    theirs = HistGradientBoostingRegressor(
        max_iter=options["max_iter"],
        learning_rate=options["learning_rate"],
        max_leaf_nodes=options["max_leaf_nodes"],
        min_samples_leaf=options["min_samples_leaf"],
        l2_regularization=options["l2_regularization"],
        early_stopping=False,
        random_state=0,
    ).fit(x.astype(np.float64), y)
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x.astype(np.float64)), rtol=1e-10)


def test_auto_picks_the_best_ranking_candidate(task: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = task
    auto = AutoPredictor(candidates=["ridge", "gbt"], seed=0).fit(x, y)
    assert set(auto.scores) == {"ridge", "gbt"}
    winner = max(auto.scores, key=auto.scores.__getitem__)
    assert auto.chosen is not None and auto.chosen.name == winner
    np.testing.assert_array_equal(auto.predict(x), auto.chosen.predict(x))
    restored = predictor_from_bytes(predictor_to_bytes(auto))
    assert restored.scores == auto.scores  # type: ignore[attr-defined]


def test_bad_inputs_name_the_field(task: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = task
    with pytest.raises(NotFittedError, match="fit"):
        make_predictor("ridge").predict(x)
    fitted = make_predictor("ridge").fit(x, y)
    with pytest.raises(ValueError, match="x: expected 138 columns"):
        fitted.predict(x[:, :10])
    with pytest.raises(ValueError, match="y: has 5 values for 400 rows"):
        make_predictor("gbt").fit(x, y[:5])
    with pytest.raises(ValueError, match="x: contains NaN"):
        make_predictor("ridge").fit(np.full((4, 3), np.nan), np.zeros(4))
    with pytest.raises(ValueError, match=r"kind: unknown predictor 'svm'; allowed values"):
        make_predictor("svm")
    with pytest.raises(ValueError, match="allowed options for 'mlp'"):
        make_predictor("mlp", depth=3)
    with pytest.raises(ValueError, match="alpha"):
        make_predictor("ridge", alpha=0.0)
    with pytest.raises(ValueError, match="candidates"):
        AutoPredictor(candidates=["auto"])
    with pytest.raises(ValueError, match="kind"):
        PredictorSpec.model_validate({"kind": "svm"})
    assert rank_correlations(np.arange(5.0), np.ones(5)) == (0.0, 0.0)


def test_stratified_subnets_cover_the_macs_range() -> None:
    rng = np.random.default_rng(0)
    archs = stratified_subnets(SPACE, 30, rng)
    ids = [a.id for a in archs]
    assert len(archs) == 30 and len(set(ids)) == 30
    reference = SPACE.reference_archs()
    assert archs[0].id == reference["min"].id and archs[1].id == reference["max"].id
    macs = SPACE.complexity_batch(archs)[0]
    low, high = macs[0], macs[1]
    thirds = np.digitize(macs[2:], np.linspace(low, high, 4)[1:-1])
    assert set(thirds.tolist()) == {0, 1, 2}  # random sampling would rarely reach the top third
    with pytest.raises(ValueError, match="num_subnets"):
        stratified_subnets(SPACE, 1, rng)


# --- the accuracy dataset on Ray ---------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DatasetSpec]:
    """A tiny supernet after one quick epoch on small synthetic images, checkpointed."""
    spec = DatasetSpec(kind="synthetic", num_samples=160, resolution=24)
    data = load_dataset(spec)
    space = search_spaces.get(
        "ofa_mbv3", preset="tiny", num_classes=data.num_classes, in_channels=data.in_channels
    )
    config = TrainingConfig(
        epochs=1,
        batch_size=32,
        warmup_epochs=0.0,
        bn_recalibration_batches=2,
        schedule="single_stage",
    )
    directory = tmp_path_factory.mktemp("supernet")
    SupernetTrainer(space, data, config, checkpoint_dir=directory).fit()
    return directory, spec


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    from workers.cluster import connect_ray

    connect_ray(num_cpus=2)
    import ray

    yield
    ray.shutdown()


def test_actor_pool_measures_the_same_as_one_process(
    trained: tuple[Path, DatasetSpec], local_ray: None
) -> None:
    from workers.accuracy import AccuracyDatasetJob, build_accuracy_dataset

    directory, spec = trained
    job = AccuracyDatasetJob(
        space="ofa_mbv3",
        preset="tiny",
        dataset=spec,
        checkpoint=directory,
        num_subnets=6,
        num_actors=2,
        chunk_size=2,
    )
    seen: list[tuple[int, int]] = []
    dataset = build_accuracy_dataset(job, progress=lambda done, total: seen.append((done, total)))
    assert isinstance(dataset, AccuracyDataset) and dataset.split == "holdout"
    assert [r.id for r in dataset.records][:2] == [
        SPACE.reference_archs()["min"].id,
        SPACE.reference_archs()["max"].id,
    ]
    assert seen[-1] == (6, 6) and len({r.id for r in dataset.records}) == 6
    # the same subnets measured in this process give the same accuracies
    data = load_dataset(spec)
    space = search_spaces.get("ofa_mbv3", preset="tiny", num_classes=data.num_classes)
    local = SupernetAccuracy.from_checkpoint(space, data, load_checkpoint(directory))
    archs = [space.arch_from_dict(r.arch) for r in dataset.records]
    np.testing.assert_allclose([r.accuracy for r in dataset.records], local(archs))
    macs, params = space.complexity_batch(archs)
    assert [r.macs for r in dataset.records] == macs.tolist()
    assert [r.params for r in dataset.records] == params.tolist()
    x, y = dataset.arrays(space)
    assert x.shape == (6, space.encoding_dim) and np.all((y >= 0) & (y <= 100))
    with pytest.raises(ValueError, match="checkpoint"):
        build_accuracy_dataset(job.model_copy(update={"checkpoint": directory / "missing"}))


def test_linas_measures_its_rounds_on_the_actor_pool(
    trained: tuple[Path, DatasetSpec], local_ray: None
) -> None:
    from nas.search import (
        Constraint,
        MacsObjective,
        MeasuredObjective,
        SearchProblem,
        make_strategy,
    )
    from workers.accuracy import AccuracyDatasetJob, SubnetEvaluatorPool

    directory, spec = trained
    job = AccuracyDatasetJob(space="ofa_mbv3", preset="tiny", dataset=spec, checkpoint=directory)
    macs = MacsObjective(SPACE)
    linas = make_strategy(
        "linas",
        max_evaluations=10,
        initial_evaluations=6,
        evaluations_per_round=2,
        population_size=8,
        generations=3,
    )
    with SubnetEvaluatorPool(job) as pool:
        problem = SearchProblem(
            SPACE, [MeasuredObjective(pool.accuracies), macs], [Constraint(macs, 2.0e6)]
        )
        result = linas.run(problem, seed=0)
    assert result.num_evaluations == len(result.subnets) == 10
    data = load_dataset(spec)
    space = search_spaces.get("ofa_mbv3", preset="tiny", num_classes=data.num_classes)
    local = SupernetAccuracy.from_checkpoint(space, data, load_checkpoint(directory))
    archs = [space.arch_from_dict(s.arch) for s in result.subnets]
    np.testing.assert_allclose([s.values["accuracy"] for s in result.subnets], local(archs))
    assert all(s.limits["macs"] <= 2.0e6 for s in result.subnets)
