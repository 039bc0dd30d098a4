"""The finetuning stage: each front's chosen subnets trained on alone, recipes tuned on Ray Tune.

Per device the front's best subnet and the next members within the budget
(``FinetuneSettings.subnets`` in all, each subnet once across devices) are extracted with
their inherited weights and recalibrated BN, then fine-tuned (``nas.training.finetune``) in
Ray Tune trials: Optuna (``OptunaSearch``) samples the recipes, ASHA stops trials whose holdout
accuracy trails after ``grace_epochs``. The winner is the trial with the highest holdout
accuracy at its last epoch, and its val accuracy at that epoch is what ``results.json``
shows (``SubnetResult.finetuned``): chosen on holdout, reported on val.

One Tuner per subnet, not one for all, because:

- ASHA ranks the trials that reach a rung against each other; across subnets it would stop a
  small subnet's trial for being small, not for its recipe.
- Optuna's sampler learns where good recipes lie for one objective; one subnet's holdout
  accuracy says little about another's at the same recipe.
- A subnet is the unit of resume: its finished record skips it, and its own experiment
  directory is restored (finished trials kept) when an attempt died inside it.

The price is a Tuner start per subnet (about a second); one subnet's trials still run in
parallel, a CPU each. Trials load the job's data and supernet from its files
(``workers.trained``, cached per worker process), so nothing large is captured or shipped.

Files: ``finetune/tune/<arch_id>/`` (the Tune experiment), ``finetune/<arch_id>/weights.pt``
(the winner's state dict of the extracted subnet) and ``finetune/<arch_id>/result.json`` (its
``FinetunedResult``, written last: a subnet with both is done).

``finetune_arch`` fine-tunes one subnet of any trained job directory; the stage, the service's
on-demand fine-tuning and ``nas finetune --job-dir`` all call it.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from nas.training.config import OptimizerName, TrainingConfig
from nas.training.finetune import FinetuneRecipe, RecipeSpace, recipe_space
from workers.cluster import connect_ray
from workers.relay import relayed
from workers.results import (
    RESULTS_NAME,
    FinetunedResult,
    JobResults,
    SubnetResult,
    read_results,
    within_budget,
    write_results,
)
from workers.spec import FinetuneSettings
from workers.stages import write_atomically
from workers.trained import JobFiles

if TYPE_CHECKING:
    import torch

    from workers.jobs import StageContext

FINETUNE_DIR = "finetune"
TUNE_DIR = "tune"
WEIGHTS_NAME = "weights.pt"
RECORD_NAME = "result.json"
#: The file in each Tune checkpoint: the subnet's and the optimizer's state, and the epoch.
STATE_NAME = "finetune_state.pt"
#: CPUs a trial reserves, and its torch threads.
TRIAL_CPUS = 1


class TrialSetup(BaseModel):
    """What a trial needs to rebuild its subnet from the job's files (small: it travels to
    every trial through ``tune.with_parameters``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: JobFiles
    arch: dict[str, Any]
    teacher: dict[str, Any] | None
    batch_size: int
    optimizer: OptimizerName
    momentum: float
    kd_temperature: float
    seed: int


def weights_path(job_dir: Path, arch_id: str) -> Path:
    return job_dir / FINETUNE_DIR / arch_id / WEIGHTS_NAME


def record_path(job_dir: Path, arch_id: str) -> Path:
    return job_dir / FINETUNE_DIR / arch_id / RECORD_NAME


def experiment_path(job_dir: Path, arch_id: str) -> Path:
    return job_dir / FINETUNE_DIR / TUNE_DIR / arch_id


def chosen_subnets(results: JobResults, per_device: int) -> list[SubnetResult]:
    """Per front: its best subnet and the members after it within the budget (front order,
    most accurate first), ``per_device`` in all; each subnet once, in order of first choice."""
    chosen: dict[str, SubnetResult] = {}
    for front in results.fronts:
        if front.best is None:
            continue
        following = front.members[front.members.index(front.best) :]
        picked = [results.subnet(a) for a in following]
        picked = [s for s in picked if within_budget(s, front.device, front.budget)]
        for subnet in picked[:per_device]:
            chosen.setdefault(subnet.arch_id, subnet)
    return list(chosen.values())


def _param_space(recipes: RecipeSpace) -> dict[str, Any]:
    """Tune's domains for the recipe bounds (equal bounds: a constant)."""
    from ray import tune

    space: dict[str, Any] = {}
    for name, (low, high) in recipes.bounds().items():
        if low == high:
            space[name] = low
        elif isinstance(low, int) and isinstance(high, int):
            space[name] = tune.randint(low, high + 1)  # upper bound excluded
        elif name in RecipeSpace.LOG:
            space[name] = tune.loguniform(low, high)
        else:
            space[name] = tune.uniform(low, high)
    return space


def _trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """One Tune trial: the subnet extracted from the job's supernet (BN recalibrated),
    fine-tuned with the sampled recipe; after every epoch it reports holdout and val accuracy
    with a checkpoint (model, optimizer, epoch) that a restored trial resumes from."""
    import torch
    from ray import tune

    from nas.data.loading import EvalBatches, TrainBatches
    from nas.training.bn import accuracy
    from nas.training.finetune import Teacher, finetune_subnet, recipe_optimizer

    # one intra-op thread per reserved CPU, as the evaluator actors run: torch's default (every
    # core) makes spinning threads fight the other trials and processes for the same cores
    torch.set_num_threads(TRIAL_CPUS)
    job = TrialSetup.model_validate(setup)
    recipe = FinetuneRecipe.model_validate({k: config[k] for k in FinetuneRecipe.model_fields})
    trained = job.job.load()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    arch = trained.space.arch_from_dict(job.arch)
    model = trained.extract(arch).to(device)
    teacher = None
    if job.teacher is not None and recipe.kd_weight > 0:
        teacher_arch = trained.space.arch_from_dict(job.teacher)
        teacher = Teacher(
            trained.extract(teacher_arch).to(device),
            int(teacher_arch.resolution),
            job.kd_temperature,
        )
    optimizer = recipe_optimizer(model, recipe, optimizer=job.optimizer, momentum=job.momentum)
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / STATE_NAME, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
    data = trained.data
    train = TrainBatches(data.train, batch_size=job.batch_size, seed=job.seed, device=device)
    holdout = EvalBatches(data.holdout, num_workers=data.spec.num_workers, device=device)
    val = EvalBatches(data.val, num_workers=data.spec.num_workers, device=device)

    def report(epoch: int, tuned: torch.nn.Module) -> bool:
        metrics = {
            "epoch": epoch,
            "holdout_accuracy": accuracy(tuned, holdout, arch.resolution),
            "val_accuracy": accuracy(tuned, val, arch.resolution),
        }
        state = {"model": tuned.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}
        with tempfile.TemporaryDirectory() as directory:
            torch.save(state, Path(directory) / STATE_NAME)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        return True  # ASHA stops a trial from the driver, not through this answer

    finetune_subnet(
        model,
        train,
        recipe,
        resolution=int(arch.resolution),
        teacher=teacher,
        on_epoch=report,
        optimizer=optimizer,
        start_epoch=start,
        seed=job.seed,
    )


def trial_gpus(wanted: float) -> float:
    """A trial's GPU share: ``wanted`` (the job's placement asks for one) where the cluster
    has GPUs, else 0 (trials run on a CPU each)."""
    import ray

    wanted = min(wanted, 1.0)
    return wanted if 0 < wanted <= ray.cluster_resources().get("GPU", 0.0) else 0.0


def _restorable(experiment: Path) -> bool:
    """Tune writes ``tuner.pkl`` as ``fit`` starts and its experiment state once trials run;
    an attempt killed between the two left nothing that Tune can restore."""
    from ray import tune

    return tune.Tuner.can_restore(experiment) and any(experiment.glob("experiment_state-*.json"))


class FinetuneStoppedError(Exception):
    """``should_stop`` answered true: the trials were stopped and nothing was recorded."""


def _callbacks(on_epoch: Callable[..., Any], should_stop: Callable[[], bool], budget: int) -> Any:
    """Tune's driver-side hooks (``workers.relay`` stand-ins, which Tune can pickle with the
    experiment): every trial epoch reported counts towards ``budget`` (samples x max_epochs,
    what running every trial to its end would take); the stopper ends the whole experiment
    once ``should_stop`` says so (the driver's loop asks it at every step)."""
    from ray import tune
    from ray.tune.stopper import Stopper

    class _Epochs(tune.Callback):
        def __init__(self) -> None:
            self.reported = 0

        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: Any) -> None:
            self.reported += 1
            on_epoch(self.reported, budget)

    class _Stop(Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return bool(should_stop())

    return [_Epochs()], _Stop()


def _tuner(
    setup: TrialSetup,
    arch_id: str,
    recipes: RecipeSpace,
    settings: FinetuneSettings,
    *,
    gpus: float,
    log: Callable[[str], None],
    callbacks: list[Any],
    stopper: Any,
) -> Any:
    """A new Tuner for the subnet, or its interrupted experiment restored: finished trials are
    kept, unfinished and errored ones resume from their last checkpoint."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    resources = {"cpu": float(TRIAL_CPUS), "gpu": gpus}
    trainable = tune.with_resources(
        tune.with_parameters(_trial, setup=setup.model_dump(mode="json")), resources
    )
    experiment = experiment_path(setup.job.job_dir, arch_id)
    if _restorable(experiment):
        log(f"{arch_id}: restoring its Ray Tune experiment; finished trials are kept")
        return tune.Tuner.restore(
            str(experiment), trainable, resume_unfinished=True, resume_errored=True
        )
    shutil.rmtree(experiment, ignore_errors=True)  # what an attempt killed at its start left
    return tune.Tuner(
        trainable,
        param_space=_param_space(recipes),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(seed=settings.seed),
            scheduler=ASHAScheduler(
                time_attr="training_iteration",
                max_t=settings.max_epochs,
                grace_period=settings.grace_epochs,
            ),
            num_samples=settings.samples,
            metric="holdout_accuracy",
            mode="max",
            reuse_actors=True,  # a reused worker keeps the job's data and supernet loaded
        ),
        run_config=tune.RunConfig(
            name=arch_id,
            storage_path=str(experiment.parent),
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
            stop=stopper,
        ),
    )


def _finetuned(job_dir: Path, arch_id: str, grid: Any) -> FinetunedResult:
    """The winner of a finished experiment (highest holdout accuracy at its last epoch; ties:
    the trial Tune created first), its weights copied to ``weights.pt``, its record written."""
    import torch

    reported = [r for r in grid if not r.error and r.metrics and "holdout_accuracy" in r.metrics]
    if not reported:
        errors = [str(r.error) for r in grid if r.error]
        first = errors[0] if errors else "no trial reported an epoch"
        raise RuntimeError(f"{arch_id}: every fine-tuning trial failed; the first: {first}")
    winner = max(reported, key=lambda r: r.metrics["holdout_accuracy"])  # ties: the first
    metrics = winner.metrics
    with winner.checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / STATE_NAME, map_location="cpu", weights_only=True)
    if state["epoch"] != metrics["epoch"]:
        raise RuntimeError(
            f"{arch_id}: the winning trial's checkpoint is of epoch {state['epoch']}, its last "
            f"report of epoch {metrics['epoch']}"
        )
    buffer = io.BytesIO()
    torch.save(state["model"], buffer)
    weights = weights_path(job_dir, arch_id)
    write_atomically(weights, buffer.getvalue())
    recipe = FinetuneRecipe.model_validate(
        {k: winner.config[k] for k in FinetuneRecipe.model_fields}
    )
    # trials ASHA stopped before their recipe's last epoch
    stopped = sum(1 for r in reported if r.metrics["epoch"] < int(r.config["epochs"]))
    result = FinetunedResult(
        accuracy=float(metrics["val_accuracy"]),
        holdout_accuracy=float(metrics["holdout_accuracy"]),
        recipe=recipe.model_dump(),
        epochs=int(metrics["epoch"]),
        trials=len(grid),
        stopped_early=stopped,
        weights=weights.relative_to(job_dir).as_posix(),
    )
    write_atomically(record_path(job_dir, arch_id), result.model_dump_json(indent=1).encode())
    return result


def teacher_arch(space: str, preset: str) -> dict[str, Any]:
    """The supernet's largest subnet (its arch does not depend on the data's head size)."""
    import numpy as np

    import search_spaces

    return search_spaces.get(space, preset=preset).sample(np.random.default_rng(0), "max").to_dict()


def finished_record(job_dir: Path, arch_id: str) -> FinetunedResult | None:
    """The subnet's fine-tuning record when its weights and record are both on disk."""
    weights, record = weights_path(job_dir, arch_id), record_path(job_dir, arch_id)
    if weights.exists() and record.exists():
        return FinetunedResult.model_validate_json(record.read_bytes())
    return None


def finetune_arch(
    job: JobFiles,
    arch: dict[str, Any],
    settings: FinetuneSettings,
    *,
    training: TrainingConfig,
    recipes: RecipeSpace | None = None,
    gpus: float = 0.0,
    log: Callable[[str], None] = lambda message: None,
    on_epoch: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FinetunedResult:
    """Fine-tune one subnet (``arch``, a dict of the job's space) of a trained job on Ray Tune
    (connected, or a local Ray started here): ``settings.samples`` recipes sampled by Optuna
    from ``recipes`` (default ``recipe_space`` of the settings), ASHA on holdout accuracy,
    the winner's weights and record written under ``finetune/<arch_id>/``. A subnet already
    done answers its record; an interrupted experiment is restored. ``training`` gives the
    batch size, optimizer and KD temperature (the supernet's). ``on_epoch(reported, budget)``
    follows the trials' epochs; ``should_stop`` is polled by Tune's driver and, once true,
    stops the trials, removes the experiment and raises ``FinetuneStoppedError``. Both may
    hold anything (locks included): Tune sees stand-ins. One call per subnet at a time in a
    process (a second is refused with ``ValueError``)."""
    import search_spaces

    arch_id = search_spaces.get(job.space, preset=job.preset).arch_from_dict(arch).id
    done = finished_record(job.job_dir, arch_id)
    if done is not None:
        log(f"{arch_id}: fine-tuned by an earlier attempt; not run again")
        return done
    recipes = recipes or recipe_space(settings.max_epochs, distill=settings.distill)
    setup = TrialSetup(
        job=job.model_copy(update={"job_dir": job.job_dir.resolve()}),
        arch=arch,
        teacher=teacher_arch(job.space, job.preset) if settings.distill else None,
        batch_size=training.batch_size,
        optimizer=training.optimizer,
        momentum=training.momentum,
        kd_temperature=training.kd_temperature,
        seed=settings.seed,
    )
    connect_ray()
    # Tune pickles its callbacks and stopper with the experiment (a progress bar's or an event
    # log's lock cannot be), so it gets stand-ins keyed by the experiment: the copies a
    # restored experiment unpickles reach this call's functions too
    key = str(experiment_path(setup.job.job_dir, arch_id))
    with (
        relayed(on_epoch or (lambda reported, budget: None), f"{key}:on_epoch") as epochs,
        relayed(should_stop or (lambda: False), f"{key}:should_stop", False) as stop,
    ):
        callbacks, stopper = _callbacks(epochs, stop, settings.samples * settings.max_epochs)
        tuner = _tuner(
            setup,
            arch_id,
            recipes,
            settings,
            gpus=trial_gpus(gpus) if gpus else 0.0,
            log=log,
            callbacks=callbacks,
            stopper=stopper,
        )
        grid = tuner.fit()
    if should_stop is not None and should_stop():
        shutil.rmtree(experiment_path(job.job_dir, arch_id), ignore_errors=True)
        raise FinetuneStoppedError(f"{arch_id}: fine-tuning stopped; its trials were ended")
    return _finetuned(job.job_dir, arch_id, grid)


def run_finetuning(ctx: StageContext, *, recipes: RecipeSpace | None = None) -> None:
    """Fine-tune each front's chosen subnets (``chosen_subnets``) on Ray Tune and write their
    ``finetuned`` figures into ``results.json``; a subnet already done is not run again.
    ``recipes``: the recipe bounds (default ``recipe_space`` of the job's settings)."""
    settings = ctx.request.finetune
    if settings is None:
        ctx.log("finetuning skipped: the job asks for none (finetune is null)")
        return
    path = ctx.job_dir / RESULTS_NAME
    results = read_results(path)
    chosen = chosen_subnets(results, settings.subnets)
    if not chosen:
        ctx.log("finetuning skipped: no front has a subnet within its budget", level="warning")
        return
    ctx.log(
        f"fine-tuning {len(chosen)} subnets, {settings.samples} recipes each, at most "
        f"{settings.max_epochs} epochs"
    )
    files = JobFiles.of(ctx.request)
    finetuned: dict[str, FinetunedResult] = {}
    for index, subnet in enumerate(chosen):
        arch_id = subnet.arch_id

        def epochs(reported: int, budget: int, index: int = index) -> None:
            ctx.progress((index + min(reported / budget, 1.0)) / len(chosen))

        result = finetune_arch(
            files,
            subnet.arch,
            settings,
            training=ctx.request.training,
            recipes=recipes,
            gpus=ctx.request.placement.resources_per_worker.get("GPU", 0.0),
            log=ctx.log,
            on_epoch=epochs,
        )
        finetuned[arch_id] = result
        ctx.artifact("finetuned_weights", weights_path(ctx.job_dir, arch_id), arch_id=arch_id)
        inherited = subnet.measured_accuracy
        shown = "?" if inherited is None else f"{inherited:.2f}%"
        ctx.metrics(
            key=f"finetuning/{arch_id}"[:64],
            message=f"{arch_id}: {shown} inherited -> {result.accuracy:.2f}% fine-tuned on val "
            f"({result.trials} recipes, {result.stopped_early} stopped early)",
            data={
                "arch_id": arch_id,
                "inherited_accuracy": inherited,
                "finetuned_accuracy": result.accuracy,
                "holdout_accuracy": result.holdout_accuracy,
                "recipe": result.recipe,
                "epochs": result.epochs,
                "trials": result.trials,
                "stopped_early": result.stopped_early,
            },
        )
        ctx.progress((index + 1) / len(chosen))
    subnets = [
        s.model_copy(update={"finetuned": finetuned[s.arch_id]}) if s.arch_id in finetuned else s
        for s in results.subnets
    ]
    write_results(results.model_copy(update={"subnets": subnets}), path)
    ctx.results(path)


def load_finetuned(job_dir: Path, trained: Any, arch: Any) -> torch.nn.Module | None:
    """The subnet of ``arch`` extracted from ``trained`` (a ``workers.trained.TrainedJob``)
    with its fine-tuned weights, eval mode, on the CPU; None when it was not fine-tuned."""
    import torch

    if finished_record(job_dir, arch.id) is None:
        return None
    weights = weights_path(job_dir, arch.id)
    model = trained.extract(arch)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()
