"""GPU checks, for a machine with a CUDA device: one short run, one table.

(a) bf16 + channels_last training steps of the ImageNet presets (ofa_mbv3, bignas; sandwich
    rule, batch 64, digits at 224 px): that ``SupernetTrainer`` turned both on by itself (a
    forward hook on the stem convolution sees a channels_last input and a bfloat16 output),
    and the images/s of a few timed steps;
(b) a GPU evaluator actor: ``SubnetEvaluatorPool`` with ``num_gpus=0.25`` measuring 8 subnets
    from the checkpoint of a short training written first (tiny ofa_mbv3 on digits): subnets/s,
    and the device each actor's supernet sits on;
(c) a one-GPU Ray Train run (``train_distributed`` with ``resources_per_worker={"GPU": 1}``,
    as the service launches it): one epoch of the tiny ofa_mbv3 on digits, and the worker's
    torch device;
(d) GPU evaluation: ``SupernetAccuracy`` on cuda (bf16) vs on the CPU (float32) for a few
    subnets of that checkpoint: the largest accuracy difference in points.

No internet is needed (digits ship with scikit-learn). About 2-3 minutes on an H100; every
check has its own time limit (``--check-seconds``) so that a hang costs one row, not the run.

    python benchmarks/gpu_check.py                  # no GPU: says so in one line, exits 0
    python benchmarks/gpu_check.py --cpu-dry-run    # the same code paths on CPU, tiny preset

Exit status 1 when a check failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

NO_GPU = "no CUDA device: nothing to check"
SPACES = ("ofa_mbv3", "bignas")
#: Digits: 8x8 grey images, upsampled; the short training and the evaluator use this side.
SMALL_RESOLUTION = 32


class CheckTimeoutError(Exception):
    pass


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise ``CheckTimeoutError`` in the main thread after ``seconds`` (SIGALRM)."""

    def expire(*_: object) -> None:
        raise CheckTimeoutError(f"timed out after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class Setting:
    """What differs between the GPU run and the CPU dry run."""

    def __init__(self, dry_run: bool, args: argparse.Namespace) -> None:
        import torch

        self.dry_run = dry_run
        self.device = torch.device("cpu" if dry_run else "cuda")
        self.preset = "tiny" if dry_run else "imagenet"
        self.resolution = SMALL_RESOLUTION if dry_run else 224
        self.batch = args.batch if args.batch else (16 if dry_run else 64)
        self.steps = args.steps if args.steps else (2 if dry_run else 5)
        self.warmup = 1 if dry_run else 2
        self.evaluator_gpus = 0.0 if dry_run else 0.25
        self.num_actors = 1 if dry_run else 2
        self.subnets = args.subnets
        self.checkpoint_epochs = 1 if dry_run else 2
        self.workdir = args.workdir

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()


def digits(resolution: int) -> Any:
    from nas.data import DatasetSpec

    return DatasetSpec(kind="digits", resolution=resolution)


def short_config(epochs: int, batch: int) -> Any:
    from nas.training import TrainingConfig

    return TrainingConfig(
        epochs=epochs,
        batch_size=batch,
        schedule="single_stage",
        sampler="sandwich",
        warmup_epochs=0.0,
        bn_recalibration_batches=2,
    )


# --- (a) bf16 + channels_last training steps --------------------------------------------


class StemProbe:
    """Forward hook on the first 4-D convolution: the memory format of its input and the
    dtype of its output, as the trainer ran it."""

    def __init__(self, model: Any) -> None:
        import torch

        self.input_channels_last: bool | None = None
        self.output_dtype: Any = None
        self.weight_channels_last = False
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.ndim == 4:
                self.weight_channels_last = weight.is_contiguous(memory_format=torch.channels_last)
                self.handle = module.register_forward_hook(self)
                return
        raise RuntimeError("no 4-D convolution weight in the supernet")

    def __call__(self, module: Any, inputs: Any, output: Any) -> None:
        import torch

        self.input_channels_last = inputs[0].is_contiguous(memory_format=torch.channels_last)
        self.output_dtype = output.dtype
        self.handle.remove()


def check_training_steps(setting: Setting, name: str) -> tuple[bool, str, str]:
    import torch

    import search_spaces
    from nas.data import load_dataset
    from nas.training import SupernetTrainer

    data = load_dataset(digits(setting.resolution))
    space = search_spaces.get(
        name, preset=setting.preset, num_classes=data.num_classes, in_channels=data.in_channels
    )
    stamps: list[float] = []
    wanted = setting.warmup + setting.steps

    def clock(trainer: Any) -> None:
        setting.sync()
        stamps.append(time.perf_counter())
        if len(stamps) >= wanted:
            trainer.request_stop()

    trainer = SupernetTrainer(
        space, data, short_config(1, setting.batch), device=setting.device, step_hooks=[clock]
    )
    if trainer.steps_per_epoch < wanted:
        raise RuntimeError(f"{trainer.steps_per_epoch} steps per epoch, {wanted} needed")
    probe = StemProbe(trainer.supernet)
    if setting.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit()
    seconds = stamps[-1] - stamps[setting.warmup - 1]
    images_s = setting.steps * setting.batch / seconds
    bf16 = probe.output_dtype == torch.bfloat16
    layout = bool(probe.input_channels_last and probe.weight_channels_last)
    expected = setting.device.type == "cuda"
    ok = trainer.use_bf16 == expected and bf16 == expected and layout == expected
    result = f"bf16 {'on' if bf16 else 'off'}, channels_last {'on' if layout else 'off'}"
    if not expected:
        result += " (CPU: both off, as expected)" if ok else " (CPU: expected both off)"
    figure = (
        f"{images_s:.0f} img/s ({setting.steps} sandwich steps of 4 subnets, batch "
        f"{setting.batch}, {setting.preset} preset, {setting.resolution} px data)"
    )
    if setting.device.type == "cuda":
        figure += f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    return ok, result, figure


# --- a short training's checkpoint ------------------------------------------------------


def write_checkpoint(setting: Setting) -> tuple[bool, str, str]:
    import search_spaces
    from nas.data import load_dataset
    from nas.training import SupernetTrainer

    data = load_dataset(digits(SMALL_RESOLUTION))
    space = search_spaces.get("ofa_mbv3", preset="tiny", num_classes=data.num_classes)
    trainer = SupernetTrainer(
        space,
        data,
        short_config(setting.checkpoint_epochs, 64),
        device=setting.device,
        checkpoint_dir=setting.workdir / "checkpoint",
    )
    last = trainer.fit().history[-1]
    return (
        (setting.workdir / "checkpoint").is_dir(),
        f"written ({trainer.device})",
        f"tiny ofa_mbv3, digits, {setting.checkpoint_epochs} epoch(s): val top-1 max "
        f"{last.max_val_acc:.1f}%, min {last.min_val_acc:.1f}%",
    )


def evaluated_archs(count: int) -> list[Any]:
    import search_spaces

    space = search_spaces.get("ofa_mbv3", preset="tiny", num_classes=10)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng, "min"), space.sample(rng, "max")]
    return archs + [space.sample(rng, "random") for _ in range(count - 2)]


# --- (b) the GPU evaluator actor --------------------------------------------------------


def check_evaluator_actor(setting: Setting) -> tuple[bool, str, str]:
    import ray

    from workers.accuracy import AccuracyDatasetJob, SubnetEvaluatorPool

    archs = [a.to_dict() for a in evaluated_archs(setting.subnets)]
    job = AccuracyDatasetJob(
        space="ofa_mbv3",
        preset="tiny",
        dataset=digits(SMALL_RESOLUTION),
        checkpoint=setting.workdir / "checkpoint",
        split="val",
        num_actors=setting.num_actors,
        chunk_size=2,
        num_gpus=setting.evaluator_gpus,
    )

    def where(actor: Any) -> dict[str, Any]:  # nested: cloudpickle sends it by value
        import ray as actor_ray
        import torch

        return {
            "device": str(next(actor.evaluate.supernet.parameters()).device),
            "cuda": torch.cuda.is_available(),
            "gpus": [str(g) for g in actor_ray.get_gpu_ids()],
        }

    started = time.perf_counter()
    with SubnetEvaluatorPool(job) as pool:
        # the pool keeps its actors private; Ray's __ray_call__ runs ``where`` on each
        seen = ray.get([actor.__ray_call__.remote(where) for actor in pool._actors])
        ready = time.perf_counter()
        records = pool.measure(archs)
        measured = time.perf_counter()
    devices = sorted({s["device"] for s in seen})
    expected = setting.device.type
    ok = len(records) == len(archs) and all(d.startswith(expected) for d in devices)
    gpus = sorted({g for s in seen for g in s["gpus"]})
    result = f"{len(seen)} actor(s) on {', '.join(devices)}"
    if gpus:
        result += f" (Ray GPU ids {', '.join(gpus)})"
    figure = (
        f"{len(records) / (measured - ready):.2f} subnets/s ({len(records)} subnets, "
        f"num_gpus={setting.evaluator_gpus}/actor; actors ready in {ready - started:.0f} s)"
    )
    return ok, result, figure


# --- (c) a one-GPU Ray Train run --------------------------------------------------------


def check_ray_train(setting: Setting) -> tuple[bool, str, str]:
    from workers.spec import WorkerPlacement
    from workers.training import TrainJob, train_distributed

    gpu = setting.device.type == "cuda"
    job = TrainJob(
        space="ofa_mbv3",
        preset="tiny",
        dataset=digits(SMALL_RESOLUTION),
        training=short_config(1, 64),
        output_dir=setting.workdir / "ray-train",
        num_workers=1,
        use_gpu=None if gpu else False,
        placement=WorkerPlacement(resources_per_worker={"GPU": 1} if gpu else {}),
        max_failures=0,
    )
    workers: list[dict[str, Any]] = []
    metrics = train_distributed(job, on_worker=workers.append)
    devices = sorted({str(w.get("device")) for w in workers})
    ok = metrics.get("epoch") == 1 and all(d.startswith(setting.device.type) for d in devices)
    result = f"worker device {', '.join(devices) or 'not reported'}"
    figure = (
        f"1 epoch, tiny ofa_mbv3 on digits: val top-1 max {metrics.get('max_val_acc', 0):.1f}%, "
        f"min {metrics.get('min_val_acc', 0):.1f}%"
    )
    return ok, result, figure


# --- (d) GPU vs CPU evaluation ----------------------------------------------------------


def check_evaluation_agreement(setting: Setting) -> tuple[bool, str, str]:
    import search_spaces
    from nas.data import load_dataset
    from nas.predictors.dataset import SupernetAccuracy
    from nas.training import load_checkpoint

    data = load_dataset(digits(SMALL_RESOLUTION))
    space = search_spaces.get("ofa_mbv3", preset="tiny", num_classes=data.num_classes)
    state = load_checkpoint(setting.workdir / "checkpoint")
    archs = evaluated_archs(4)
    on = {}
    for device in (str(setting.device), "cpu"):
        evaluate = SupernetAccuracy.from_checkpoint(space, data, state, split="val", device=device)
        on[device] = evaluate(archs)
    first, cpu = on[str(setting.device)], on["cpu"]
    worst = float(np.max(np.abs(first - cpu)))
    one_image = 100.0 / len(data.val)
    ok = worst <= max(2.0, 3 * one_image)
    pairs = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(first, cpu, strict=True))
    result = f"max abs difference {worst:.2f} points"
    figure = (
        f"{setting.device.type}/cpu top-1 of min, max, 2 random: {pairs} "
        f"({len(data.val)} val images: 1 image = {one_image:.2f} points)"
    )
    return ok, result, figure


# --- the run ------------------------------------------------------------------------------


def run_checks(setting: Setting, check_seconds: int) -> bool:
    from workers.cluster import connect_ray

    checks: list[tuple[str, Callable[[], tuple[bool, str, str]]]] = [
        (f"(a) train steps {name}", lambda name=name: check_training_steps(setting, name))
        for name in SPACES
    ]
    checks += [
        ("checkpoint for (b), (d)", lambda: write_checkpoint(setting)),
        ("(b) evaluator actor", lambda: check_evaluator_actor(setting)),
        ("(c) Ray Train, 1 worker", lambda: check_ray_train(setting)),
        ("(d) cuda vs cpu accuracy", lambda: check_evaluation_agreement(setting)),
    ]
    rows = []
    all_ok = True
    ray_started = False
    for label, check in checks:
        started = time.perf_counter()
        try:
            with time_limit(check_seconds):
                if label.startswith(("(b)", "(c)")) and not ray_started:
                    connect_ray()
                    ray_started = True
                ok, result, figure = check()
            status = "ok" if ok else "CHECK"
        except Exception as exc:  # one failed check costs its row, not the run
            ok, status, result, figure = False, "FAIL", f"{type(exc).__name__}", str(exc)[:300]
        seconds = time.perf_counter() - started
        all_ok = all_ok and ok
        rows.append((label, f"{status}: {result}", figure, seconds))
        print(f"  {label}: {status} ({seconds:.0f} s)", flush=True)
    if ray_started:
        import ray

        ray.shutdown()
    print()
    print("| check | result | figure | seconds |")
    print("|---|---|---|---|")
    for label, result, figure, seconds in rows:
        print(f"| {label} | {result} | {figure.replace('|', '/')} | {seconds:.0f} |")
    print()
    one, five, fifteen = os.getloadavg()
    print(f"load average after: {one:.2f} {five:.2f} {fifteen:.2f}")
    return all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="run every check on the CPU at the tiny preset (tests the script without a GPU)",
    )
    parser.add_argument("--batch", type=int, default=0, help="(a): default 64 (dry run 16)")
    parser.add_argument("--steps", type=int, default=0, help="(a): timed steps, default 5 (2)")
    parser.add_argument("--subnets", type=int, default=8, help="(b): subnets measured")
    parser.add_argument("--check-seconds", type=int, default=240, help="time limit per check")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary one")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print(NO_GPU)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    one, five, fifteen = os.getloadavg()
    if args.cpu_dry_run:
        where = "CPU dry run (tiny preset; nothing here says anything about a GPU)"
    else:
        props = torch.cuda.get_device_properties(0)
        where = (
            f"{torch.cuda.get_device_name(0)}, {props.total_memory / 2**30:.0f} GiB, CUDA "
            f"{torch.version.cuda}, bf16 supported: {torch.cuda.is_bf16_supported()}"
        )
    print(f"gpu_check: torch {torch.__version__}, {where}")
    print(
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average "
        f"{one:.2f} {five:.2f} {fifteen:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        if args.workdir is None:
            args.workdir = Path(tmp)
        args.workdir.mkdir(parents=True, exist_ok=True)
        setting = Setting(args.cpu_dry_run, args)
        ok = run_checks(setting, args.check_seconds)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
