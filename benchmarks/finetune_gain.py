"""Fine-tuning gain (issue 29): fine-tuned subnets against inherited weights and scratch.

Does fine-tuning a subnet beat its inherited weights, and the same arch trained from scratch
for as many epochs?

Fashion-MNIST, tiny preset. One supernet is trained as ``benchmarks/supernet_quality.py``
trains it (its train images, schedule and recipe; its holdout carved from the official train
split), into ``--out-dir`` in the service's job layout. Val is the official test split
(``--val-images`` of it, stratified; all 10,000 by default), so the three accuracies of a
subnet are all measured on images that neither training nor any choice saw:

- inherited: the subnet evaluated inside the supernet (BN recalibrated);
- fine-tuned: ``workers.finetuning.finetune_arch``, the service's stage (Optuna recipes on Ray
  Tune, ASHA on holdout accuracy, the winner chosen on holdout), once per ``--finetune-seeds``
  seed, each seed its own Tune experiment;
- scratch: the arch alone, freshly initialised, trained with the supernet's recipe for the
  supernet's epochs plus the most epochs any seed's winning trial fine-tuned (equal epochs,
  rounded towards scratch), once per ``--seeds`` seed.

The subnets: three MACs budgets at 1/4, 1/2 and 3/4 of the way from the min to the max subnet;
per budget, the most accurate on holdout (measured from the supernet, not predicted) of
``--pool`` archs spread over the MACs range (``supernet_quality.spread_archs``). Choosing on
holdout and reporting on val keeps the inherited figure from being the best of several draws on
the split it is reported on, as the fine-tuning stage chooses its recipe.

ASHA's saving: the trial epochs Ray Tune logged (one ``result.json`` line per epoch) against
what every trial would have run to its sampled recipe's end, and against samples x max_epochs.

Noise: the spread (std) over seeds beside every seeded figure, and the sampling error of one
accuracy on the val images. Reruns with the same ``--out-dir`` reuse the supernet, the
fine-tuned subnets and the scratch runs (their earlier wall times shown with ``*``). Progress
goes to stderr, the tables to stdout.

CPUs: every process trains with one torch thread, ``--workers`` of them at a time (the Tune
trials, then the scratch runs); on a shared 2-vCPU machine one process with two threads
trained the supernet about 10x slower than with one (195 against 18 ms an image), so
``--threads`` (the supernet's) defaults to 1. The full run should take 1 to 1.5 hours on 2
CPUs (extrapolated from per-image costs measured there: supernet 15 min, fine-tuning 25-30,
scratch about 30).

    python -m benchmarks.finetune_gain --out-dir var/finetune_gain
    python -m benchmarks.finetune_gain --quick    # smoke run, 1-2 min on 2 busy cores
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

import search_spaces
from benchmarks.supernet_quality import (
    BUDGETS,
    Budget,
    epoch_logger,
    fashion_spec,
    load_averages,
    log,
    markdown_table,
    spread_archs,
    standalone_accuracy,
    supernet_config,
)
from nas.data import DatasetSplits, load_dataset
from nas.data.paths import FASHION_MNIST_PACKAGE
from nas.training import SupernetTrainer, TrainingConfig, load_checkpoint
from workers.finetuning import experiment_path, finetune_arch, finished_record
from workers.spec import FinetuneSettings
from workers.trained import SUPERNET_DIR, JobFiles, TrainedJob, build_space, checkpoint_path

PRESET = "tiny"
FASHION_TEST_SPLIT = 10_000
#: Where each budget lies between the min and the max subnet's MACs.
BUDGET_FRACTIONS = (0.25, 0.5, 0.75)
TARGET_GAIN = 0.5
TARGET_ASHA_SHARE = 0.6
QUICK = {"val_images": 300, "pool": 6, "samples": 2, "max_epochs": 2, "finetune_seeds": 1}


# --- the job directory -------------------------------------------------------------------------
def _read_idx(path: Path, header: int) -> tuple[bytes, np.ndarray]:
    raw = gzip.decompress(path.read_bytes())
    return raw[:header], np.frombuffer(raw, np.uint8, offset=header)


def write_val_subset(data_root: Path, images: int) -> str:
    """A folder under ``data_root`` reading as Fashion-MNIST whose t10k (val) files hold the
    first ``images`` of the official test split in each class's share (stratified); the train
    files link to the installed package. Its name, the spec's ``root``."""
    folder = data_root / f"fashion-mnist-val{images}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        if not (folder / name).exists():
            (folder / name).symlink_to(FASHION_MNIST_PACKAGE / name)
    head, labels = _read_idx(FASHION_MNIST_PACKAGE / "t10k-labels-idx1-ubyte.gz", 8)
    image_head, pixels = _read_idx(FASHION_MNIST_PACKAGE / "t10k-images-idx3-ubyte.gz", 16)
    per_class = [images // 10 + (c < images % 10) for c in range(10)]
    keep = np.sort(
        np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in enumerate(per_class)])
    )
    count = np.array([len(keep)], ">u4").tobytes()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(head[:4] + count + labels[keep].tobytes())
    side = int.from_bytes(image_head[8:12], "big") * int.from_bytes(image_head[12:16], "big")
    kept = pixels.reshape(-1, side)[keep]
    (folder / "t10k-images-idx3-ubyte").write_bytes(
        image_head[:4] + count + image_head[8:] + kept.tobytes()
    )
    return folder.name


def job_files(out_dir: Path, space: str, budget: Budget, val_images: int) -> JobFiles:
    """``out_dir`` as a job directory: supernet_quality's train and holdout images, val the
    official test split (cut to ``val_images``)."""
    spec = fashion_spec(budget)
    data_root = out_dir / "data"
    if val_images < FASHION_TEST_SPLIT:
        spec = spec.model_copy(update={"root": write_val_subset(data_root, val_images)})
    return JobFiles(job_dir=out_dir, space=space, preset=PRESET, dataset=spec, data_root=data_root)


class Ledger:
    """``measured.json`` in the out dir: the settings it was made with and what each finished
    part measured, so that a rerun reuses the parts and still prints their figures."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path = path
        self.entries: dict[str, Any] = {"settings": settings}
        if path.exists():
            saved = json.loads(path.read_text())
            changed = sorted(
                k for k in settings.keys() | saved["settings"].keys()
                if settings.get(k) != saved["settings"].get(k)
            )  # fmt: skip
            if changed:
                raise SystemExit(
                    f"--out-dir: {path.parent} was made with other {', '.join(changed)}; "
                    "give another --out-dir"
                )
            self.entries = saved

    def get(self, key: str) -> Any:
        return self.entries.get(key)

    def put(self, key: str, value: Any) -> None:
        self.entries[key] = value
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.entries, indent=1))
        os.replace(temporary, self.path)


@dataclass(frozen=True)
class Timed:
    """A wall time in seconds; ``reused``: measured before (by an earlier row, or an earlier run
    of the same out dir), not by this use."""

    seconds: float | None
    reused: bool = False

    def __str__(self) -> str:
        shown = "?" if self.seconds is None else f"{self.seconds:.0f}"
        return shown + ("*" if self.reused else "")


def train_supernet(
    files: JobFiles, data: DatasetSplits, config: TrainingConfig, ledger: Ledger
) -> Timed:
    """Train (or resume, or reuse) the supernet into ``<out>/supernet/``."""
    directory = files.job_dir / SUPERNET_DIR
    space = build_space(files.space, files.preset, data)
    trainer = SupernetTrainer(
        space, data, config, checkpoint_dir=directory, progress=epoch_logger("supernet")
    )
    if (directory / "latest.pt").exists():
        trainer.load_state_dict(load_checkpoint(directory))
        if trainer.epoch >= trainer.total_epochs:
            log("supernet: trained by an earlier run; not trained again")
            return Timed(ledger.get("supernet_s"), reused=True)
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    ledger.put("supernet_s", seconds)
    return Timed(seconds)


# --- the subnets -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pick:
    budget: int
    arch: Any
    macs: int
    holdout: float
    inherited: float
    """Val top-1 (%) from the supernet, BN recalibrated."""


def pick_subnets(trained: TrainedJob, pool: int) -> tuple[list[Pick], float]:
    """Per budget, the pool arch within it most accurate on holdout; the seconds taken."""
    from nas.predictors import SupernetAccuracy

    started = time.perf_counter()
    space = trained.space
    archs = spread_archs(space, pool, np.random.default_rng(2024))
    macs = space.complexity_batch(archs)[0].astype(np.int64)
    low, high = int(macs[0]), int(macs[-1])  # spread_archs: the min and max first and last
    budgets = [int(low + f * (high - low)) for f in BUDGET_FRACTIONS]
    state = load_checkpoint(checkpoint_path(trained.job_dir))
    holdout = SupernetAccuracy.from_checkpoint(space, trained.data, state, split="holdout")
    measured = holdout(archs)
    log(f"pool: {pool} archs measured on holdout, {np.ptp(measured):.1f} points apart")
    chosen = [int(np.argmax(np.where(macs <= b, measured, -np.inf))) for b in budgets]
    inherited = trained.measure_val([archs[i] for i in chosen])
    picks = [
        Pick(b, archs[i], int(macs[i]), float(measured[i]), float(acc))
        for b, i, acc in zip(budgets, chosen, inherited, strict=True)
    ]
    return picks, time.perf_counter() - started


# --- fine-tuning -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tuned:
    """One seed's fine-tuning of one subnet."""

    accuracy: float
    epochs: int
    """Epochs the winning trial ran."""
    ran: int
    """Trial epochs Ray Tune logged."""
    to_end: int
    """Trial epochs had every trial run to its sampled recipe's end."""
    time: Timed


def trial_epochs(experiment: Path) -> tuple[int, int]:
    """(epochs logged, epochs of the sampled recipes) over the experiment's trial dirs."""
    ran = to_end = 0
    for trial in (p for p in experiment.iterdir() if (p / "params.json").exists()):
        lines = (trial / "result.json").read_text().splitlines()
        ran += sum(1 for line in lines if line.strip())
        to_end += int(json.loads((trial / "params.json").read_text())["epochs"])
    return ran, to_end


def seed_dir(out_dir: Path, seed: int) -> Path:
    """One job directory per fine-tuning seed (records are kept per arch id), all sharing the
    supernet through a link."""
    directory = out_dir / f"finetune-seed{seed}"
    directory.mkdir(exist_ok=True)
    if not (directory / SUPERNET_DIR).exists():
        (directory / SUPERNET_DIR).symlink_to(Path("..") / SUPERNET_DIR, target_is_directory=True)
    return directory


def finetune(
    files: JobFiles,
    pick: Pick,
    settings: FinetuneSettings,
    training: TrainingConfig,
    ledger: Ledger,
) -> Tuned:
    job_dir = seed_dir(files.job_dir, settings.seed)
    key = f"finetune/{settings.seed}/{pick.arch.id}"
    reused = finished_record(job_dir, pick.arch.id) is not None
    started = time.perf_counter()
    record = finetune_arch(
        files.model_copy(update={"job_dir": job_dir}),
        pick.arch.to_dict(),
        settings,
        training=training,
        log=log,
    )
    if reused:
        time_ = Timed(ledger.get(key), reused=True)
    else:
        time_ = Timed(time.perf_counter() - started)
        ledger.put(key, time_.seconds)
    ran, to_end = trial_epochs(experiment_path(job_dir, pick.arch.id))
    log(
        f"{pick.arch.id} seed {settings.seed}: {pick.inherited:.2f}% inherited -> "
        f"{record.accuracy:.2f}% fine-tuned ({record.epochs} epochs; {time_} s)"
    )
    return Tuned(record.accuracy, record.epochs, ran, to_end, time_)


# --- from scratch ------------------------------------------------------------------------------
def _scratch_run(
    files: JobFiles, config: TrainingConfig, arch: dict[str, Any], seed: int
) -> tuple[float, float]:
    """In a worker process, one torch thread: (val top-1 %, seconds) of ``arch`` trained alone
    for ``config.epochs`` (the job's data loaded once per process)."""
    torch.set_num_threads(1)
    trained = files.load()
    started = time.perf_counter()
    space = trained.space
    accuracy = standalone_accuracy(space, trained.data, config, space.arch_from_dict(arch), seed)
    return accuracy, time.perf_counter() - started


def scratch_all(
    files: JobFiles,
    runs: list[tuple[Pick, int]],
    seeds: int,
    config: TrainingConfig,
    *,
    workers: int,
    ledger: Ledger,
) -> list[tuple[list[float], Timed]]:
    """Per (pick, epochs) of ``runs``, the val top-1 (%) of each seed's from-scratch training
    and their summed seconds; the runs not in the ledger run ``workers`` at a time, each in its
    own process with one torch thread (as the fine-tuning trials run)."""
    keys = {(p.arch.id, e, s): (p, e) for p, e in runs for s in range(seeds)}
    pending = {k: v for k, v in keys.items() if ledger.get(_scratch_key(*k)) is None}
    earlier = {k[:2] for k in keys if k not in pending}  # measured by an earlier run
    if pending:
        spawn = multiprocessing.get_context("spawn")  # no forked copy of this process's threads
        with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
            futures = {
                pool.submit(
                    _scratch_run,
                    files,
                    config.model_copy(update={"epochs": epochs}),
                    pick.arch.to_dict(),
                    key[2],
                ): key
                for key, (pick, epochs) in pending.items()
            }
            for future in as_completed(futures):
                accuracy, seconds = future.result()
                arch_id, epochs, seed = futures[future]
                ledger.put(_scratch_key(arch_id, epochs, seed), [accuracy, seconds])
                log(f"{arch_id} scratch seed {seed}: {accuracy:.2f}% ({seconds:.0f} s)")
    results = []
    for pick, epochs in runs:
        done = [ledger.get(_scratch_key(pick.arch.id, epochs, s)) for s in range(seeds)]
        reused = (pick.arch.id, epochs) in earlier
        earlier.add((pick.arch.id, epochs))  # a later row of the same arch: measured above
        results.append(([d[0] for d in done], Timed(sum(d[1] for d in done), reused)))
    return results


def _scratch_key(arch_id: str, epochs: int, seed: int) -> str:
    return f"scratch/{arch_id}/{epochs}/{seed}"


# --- the tables --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    pick: Pick
    tuned: list[Tuned]
    scratch: list[float]
    scratch_epochs: int
    scratch_time: Timed

    @property
    def gains(self) -> list[float]:
        return [t.accuracy - self.pick.inherited for t in self.tuned]

    @property
    def finetuned(self) -> float:
        return float(np.mean([t.accuracy for t in self.tuned]))


def spread(values: list[float]) -> float | None:
    """Std over seeds (None for one seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def shown(values: list[float], sign: str = "") -> str:
    deviation = spread(values)
    mean = f"{np.mean(values):{sign}.2f}"
    return mean if deviation is None else f"{mean} ± {deviation:.2f}"


def budget_table(rows: list[Row], supernet_epochs: int) -> list[str]:
    header = [
        "budget MACs",
        "arch",
        "MACs",
        "holdout %",
        "inherited %",
        "fine-tuned % (epochs)",
        f"scratch % ({supernet_epochs} + ft epochs)",
        "gain",
        "ft - scratch",
        "fine-tune s",
        "scratch s",
    ]
    cells = []
    for row in rows:
        epochs = "/".join(str(t.epochs) for t in row.tuned)
        finetune_s = [t.time.seconds for t in row.tuned]
        finetune_time = Timed(
            None if None in finetune_s else sum(s for s in finetune_s if s is not None),
            any(t.time.reused for t in row.tuned),
        )
        cells.append(
            [
                f"{row.pick.budget / 1e6:.3f}M",
                row.pick.arch.id,
                f"{row.pick.macs / 1e6:.3f}M",
                f"{row.pick.holdout:.2f}",
                f"{row.pick.inherited:.2f}",
                f"{shown([t.accuracy for t in row.tuned])} ({epochs})",
                f"{shown(row.scratch)} ({row.scratch_epochs})",
                shown(row.gains, "+"),
                f"{row.finetuned - np.mean(row.scratch):+.2f}",
                str(finetune_time),
                str(row.scratch_time),
            ]
        )
    return markdown_table(header, cells)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def print_report(rows: list[Row], args: argparse.Namespace, val_images: int) -> None:
    seeds = len(rows[0].tuned)
    per_seed = [float(np.mean([r.gains[s] for r in rows])) for s in range(seeds)]
    gain = float(np.mean(per_seed))
    deviation = spread(per_seed)
    noise = "" if deviation is None else f" ± {deviation:.2f} (std over fine-tune seeds)"
    print(f"1. mean gain >= +{TARGET_GAIN:.2f} points: {gain:+.2f}{noise}: ", end="")
    print(verdict(gain >= TARGET_GAIN))
    margins = [r.finetuned - float(np.mean(r.scratch)) for r in rows]
    print(
        "2. fine-tuned >= scratch at equal epochs, every budget: "
        f"{', '.join(f'{m:+.2f}' for m in margins)}: {verdict(min(margins) >= 0)}"
    )
    unique = {(s, r.pick.arch.id): r.tuned[s] for r in rows for s in range(seeds)}
    ran = sum(t.ran for t in unique.values())
    to_end = sum(t.to_end for t in unique.values())
    ceiling = len(unique) * args.samples * args.max_epochs
    print(
        f"3. ASHA <= {TARGET_ASHA_SHARE:.0%} of the trial epochs: ran {ran} of {to_end} "
        f"(every trial to its recipe's end) = {ran / to_end:.0%}: "
        f"{verdict(ran <= TARGET_ASHA_SHARE * to_end)}; of samples x max_epochs "
        f"({ceiling}): {ran / ceiling:.0%}"
    )
    accuracy = np.mean([r.finetuned for r in rows]) / 100
    error = 100 * np.sqrt(accuracy * (1 - accuracy) / val_images)
    print(
        f"\nnoise: one accuracy on {val_images:,} val images has a sampling std of "
        f"{error:.2f} points at {100 * accuracy:.1f}%; ± beside a figure is its std over seeds"
    )


# --- command line ------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=search_spaces.names(), default="ofa_mbv3")
    parser.add_argument(
        "--epochs", type=int, default=None, help="supernet epochs; default 4 (quick 1)"
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="recipes a subnet; default 4 (quick 2)"
    )
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="a trial's most; default 3 (quick 2)"
    )
    parser.add_argument("--grace-epochs", type=int, default=1)
    parser.add_argument(
        "--seeds", type=int, default=2, help="from-scratch runs a subnet; default 2"
    )
    parser.add_argument(
        "--finetune-seeds",
        type=int,
        default=None,
        help="Tune experiments a subnet; default 2 (quick 1)",
    )
    parser.add_argument(
        "--pool", type=int, default=None, help="archs measured; default 24 (quick 6)"
    )
    parser.add_argument(
        "--val-images", type=int, default=None, help="of the test split; default 10,000 (quick 300)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of the supernet training"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="fine-tuning trials (Ray CPUs) and scratch runs at once, a thread each",
    )
    parser.add_argument("--out-dir", type=Path, default=None, help="kept; reused by a rerun")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {
        "val_images": FASHION_TEST_SPLIT, "pool": 24, "samples": 4, "max_epochs": 3,
        "finetune_seeds": 2,
    }  # fmt: skip
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not 10 <= args.val_images <= FASHION_TEST_SPLIT:
        parser.error(f"--val-images: 10 to {FASHION_TEST_SPLIT:,}, got {args.val_images}")
    if args.pool < 2 or min(args.seeds, args.finetune_seeds) < 1:
        parser.error("--pool: at least 2 (the min and max subnets); --seeds: at least 1")
    try:
        args.settings = FinetuneSettings(
            samples=args.samples, max_epochs=args.max_epochs, grace_epochs=args.grace_epochs
        )
    except ValidationError as exc:
        parser.error(f"--samples/--max-epochs/--grace-epochs: {exc.errors()[0]['msg']}")
    return args


def finetune_all(
    files: JobFiles,
    picks: list[Pick],
    args: argparse.Namespace,
    config: TrainingConfig,
    ledger: Ledger,
) -> list[list[Tuned]]:
    """Per pick, its fine-tuning per seed, on a local Ray started here only when some subnet
    is not fine-tuned yet (and stopped before the scratch runs, so it takes no CPU from them)."""
    from workers.cluster import connect_ray

    seeds = range(args.finetune_seeds)
    pending = any(
        finished_record(seed_dir(files.job_dir, s), p.arch.id) is None for s in seeds for p in picks
    )
    started_ray = pending and connect_ray(num_cpus=args.workers)
    try:
        return [
            [finetune(files, p, args.settings.model_copy(update={"seed": s}), config, ledger)
             for s in seeds]
            for p in picks
        ]  # fmt: skip
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def run(args: argparse.Namespace, out_dir: Path) -> None:
    full, quick = BUDGETS["fashion_mnist"]
    budget = quick if args.quick else full
    if args.epochs is not None:
        budget = dataclasses.replace(budget, epochs=args.epochs)
    files = job_files(out_dir, args.space, budget, args.val_images)
    data = load_dataset(files.dataset, data_root=files.data_root)
    print(
        f"fashion_mnist: train {len(data.train):,} and holdout {len(data.holdout):,} images from "
        f"the official train split, val {len(data.val):,} from its test split, "
        f"{data.resolution} px, {data.in_channels} channel"
    )
    config = supernet_config(build_space(args.space, PRESET, data), budget)
    settings = {
        "space": args.space,
        "budget": dataclasses.asdict(budget),
        "val_images": args.val_images,
        "pool": args.pool,
        "finetune": args.settings.model_dump(exclude={"seed"}),
    }
    ledger = Ledger(out_dir / "measured.json", settings)
    supernet_time = train_supernet(files, data, config, ledger)
    trained = files.load()
    picks, measure_s = pick_subnets(trained, args.pool)
    tuned = finetune_all(files, picks, args, config, ledger)
    # equal epochs: the supernet's and the most that any seed's winning trial fine-tuned
    runs = [
        (p, config.epochs + max(t.epochs for t in ts)) for p, ts in zip(picks, tuned, strict=True)
    ]
    scratches = scratch_all(files, runs, args.seeds, config, workers=args.workers, ledger=ledger)
    rows = [
        Row(pick, ts, accuracies, epochs, time_)
        for (pick, epochs), ts, (accuracies, time_) in zip(runs, tuned, scratches, strict=True)
    ]
    print(
        f"\n### {args.space} {PRESET}: per MACs budget, the best subnet of {args.pool} spread "
        "over MACs (measured on holdout), val top-1\n"
    )
    print("\n".join(budget_table(rows, config.epochs)))
    print(
        f"\nsupernet: {config.epochs} epochs ({config.schedule}), {supernet_time} s; measuring "
        f"{args.pool} archs on holdout and the picks on val: {measure_s:.0f} s"
    )
    print(
        f"fine-tuning: {args.samples} recipes x <= {args.max_epochs} epochs (ASHA grace "
        f"{args.grace_epochs}), {args.finetune_seeds} seed(s); scratch: {args.seeds} seed(s), "
        f"for the supernet's {config.epochs} epochs + the most epochs a seed's winning trial "
        f"fine-tuned; seconds summed over a subnet's seeds ({args.workers} processes at a "
        "time); * = measured before this row (a row above, or an earlier run of this --out-dir)\n"
    )
    print_report(rows, args, len(data.val))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="finetune_gain-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        print(f"load average at start: {load_averages()}")
        run(args, out_dir.resolve())
        print(f"\nwall time: {time.perf_counter() - started:.0f} s in all")
        print(f"load average at end: {load_averages()}")
    finally:
        torch.set_num_threads(threads)
        if args.out_dir is None:
            shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
