"""Input pipeline cost: memory that must not grow with the split, and loader speed that must
outrun a training step.

On a synthetic ImageFolder of photo-like JPEGs that it writes itself (smooth random gradients
and blobs plus pixel noise, so the files are about the size of real photos of that side; 10
classes; cached under ``--workdir`` and reused) it prints two tables:

1. **Peak memory** of one process that trains the tiny Once-for-All MobileNetV3 supernet for one
   full epoch of the train split (``SupernetTrainer``, which also evaluates the max and min
   subnets at the end of the epoch), then BN-recalibrates and evaluates 5 more subnets. Each
   split size runs in a fresh subprocess; this process samples the RSS (and PSS, which counts
   the pages the DataLoader workers share with their parent once) of the whole process tree
   every 50 ms, and the subprocess reports its own ``ru_maxrss``. Target: 20k/2k <= 1.2x,
   since nothing in the pipeline should hold a split.
2. **Loader throughput** at 224 px (``TrainBatches`` with ``resized_crop_flip``, batch 64) with
   0, 1 and 2 worker processes, against the images/s one training step of the ImageNet-preset
   min subnet (extracted, SGD, train mode) consumes at 224 px, batch 64; plus that step fed by
   the 2-worker loader, where the workers and the step share the CPUs. Target: the 2-worker
   loader >= 1.5x the step.

    python benchmarks/data_pipeline.py                    # ~16 min on 2 loaded cores, +3 to
                                                          # write the images the first time
    python benchmarks/data_pipeline.py --quick            # tiny sizes: the smoke test
    python benchmarks/data_pipeline.py --sizes 2000 --skip-throughput

When the smallest size's run projects the largest past ``--budget`` (10 min), the training
resolution is halved (down to 32 px) and the sizes rerun: never fewer than one full epoch.
The loader figure is the steady arrival rate of batches ``warmup..warmup+batches`` of an epoch
(each repeat a new epoch of the same persistent loader), so worker start-up and the draining
of the previous pass stay outside it. Torch runs one intra-op thread (``--threads``; the
loader workers always do): on two shared, loaded cores two threads made training steps about
4x slower, and the step rows show both. Load averages are printed before every section and in
every row: the CPUs are shared.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = ROOT / "var" / "bench-data"
#: Bumped whenever the generated images change, so an old cache is not reused.
IMAGES_VERSION = 1
NUM_CLASSES = 10
#: Subnets evaluated (BN recalibration + val) after the epoch, besides the trainer's own two.
EVALUATED_SUBNETS = 5
SAMPLE_S = 0.05
RESULT_PREFIX = "RESULT "


def load_averages() -> str:
    """The 1/5/15-minute load averages, as ``uptime`` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def load_now() -> str:
    return f"{os.getloadavg()[0]:.2f}"


# --- the synthetic ImageFolder -------------------------------------------------------------


def photo_like(index: int, *, size: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """(HWC uint8 image, label) of image ``index``: a smooth colour field over a 4x4 grid whose
    mean hue depends on the class, 3-6 soft blobs of random colour, and pixel noise (what makes
    a JPEG of a photo as large as it is). A function of (seed, index) alone."""
    rng = np.random.default_rng([seed, index])
    label = index % NUM_CLASSES
    low = 32  # the smooth parts are drawn small and upsampled: ~10 ms per 256 px image
    phase = label / NUM_CLASSES + np.arange(3) / 3
    hue = np.cos(2 * np.pi * phase).astype(np.float32)
    grid = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.float32) * 0.6 + 60 * hue + 50
    small = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8)).resize(
        (low, low), Image.Resampling.BICUBIC
    )
    field = np.asarray(small, dtype=np.float32).copy()
    yy, xx = np.mgrid[0:low, 0:low].astype(np.float32) / low
    for _ in range(int(rng.integers(3, 7))):
        cy, cx = rng.uniform(0, 1, 2)
        sy, sx = rng.uniform(0.03, 0.25, 2)
        colour = rng.uniform(-120, 120, 3).astype(np.float32)
        blob = np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2) / 2)
        field += blob[..., None] * colour
    image = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC
    )
    noise = rng.integers(-18, 19, size=(size, size, 3), dtype=np.int16)
    pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    return pixels, label


def write_images(folder: Path, start: int, stop: int, size: int) -> int:
    """Write images ``start..stop`` as ``folder/class_XX/NNNNNN.jpg``; total bytes written."""
    written = 0
    for index in range(start, stop):
        pixels, label = photo_like(index, size=size)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        path = folder / f"class_{label:02d}" / f"{index:06d}.jpg"
        path.write_bytes(buffer.getvalue())
        written += buffer.tell()
    return written


def imagefolder(workdir: Path, count: int, *, size: int, processes: int = 2) -> tuple[str, float]:
    """(name under ``workdir``, mean JPEG KB) of a folder of ``count`` images of ``size`` px;
    written when missing (into a temporary folder renamed when complete), reused otherwise."""
    name = f"jpeg{size}-{count}"
    folder = workdir / name
    marker = folder / ".complete"
    wanted = {"version": IMAGES_VERSION, "count": count, "size": size, "classes": NUM_CLASSES}
    if marker.is_file():
        found = json.loads(marker.read_text())
        if {k: found.get(k) for k in wanted} == wanted:
            return name, float(found["mean_kb"])
        raise SystemExit(
            f"{folder} holds other images ({found}); delete it or use another --workdir"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=workdir))
    for label in range(NUM_CLASSES):
        (partial / f"class_{label:02d}").mkdir()
    started = time.perf_counter()
    if count <= 1000 or processes <= 1:
        total = write_images(partial, 0, count, size)
    else:  # subprocesses, not a pool: works however this module was imported (pytest too)
        bounds = np.linspace(0, count, processes + 1).astype(int)
        children = [
            subprocess.Popen(
                [sys.executable, __file__, "--_write", str(partial), str(a), str(b), str(size)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for a, b in itertools.pairwise(bounds)
        ]
        total = 0
        for child in children:
            out, _ = child.communicate()
            if child.returncode:
                raise SystemExit(f"writing images failed (exit {child.returncode})")
            total += int(out.strip().splitlines()[-1])
    mean_kb = total / count / 1e3
    (partial / ".complete").write_text(json.dumps({**wanted, "mean_kb": mean_kb}))
    partial.rename(folder)
    print(
        f"wrote {count} {size} px JPEGs ({mean_kb:.1f} KB each) to {folder} in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return name, mean_kb


# --- peak memory of a training process -------------------------------------------------------


def rss_workload(
    data_root: Path, name: str, *, resolution: int, batch: int, workers: int | None, threads: int
) -> dict[str, Any]:
    """Train one full epoch, then BN-recalibrate + evaluate ``EVALUATED_SUBNETS`` subnets; the
    figures of this process (run in a fresh subprocess by ``measure_tree``)."""
    import torch

    torch.set_num_threads(threads)

    import search_spaces
    from nas.data import DatasetSpec, load_dataset
    from nas.training import SupernetTrainer, TrainingConfig

    started = time.perf_counter()
    spec = DatasetSpec(kind="imagefolder", root=name, resolution=resolution, num_workers=workers)
    data = load_dataset(spec, data_root=data_root)
    space = search_spaces.get(
        "ofa_mbv3", preset="tiny", num_classes=data.num_classes, in_channels=data.in_channels
    )
    config = TrainingConfig(
        epochs=1, batch_size=batch, warmup_epochs=0.0, schedule="single_stage", sampler="sandwich"
    )
    trainer = SupernetTrainer(space, data, config, log_every=10**9)
    fit_started = time.perf_counter()
    result = trainer.fit()
    trained = time.perf_counter()
    rng = np.random.default_rng(1)
    archs = [space.sample(rng, "min"), space.sample(rng, "max")]
    archs += [space.sample(rng, "random") for _ in range(EVALUATED_SUBNETS - 2)]
    accuracies = [trainer.evaluate(arch) for arch in archs]
    finished = time.perf_counter()
    last = result.history[-1]
    return {
        "train_images": len(data.train),
        "val_images": len(data.val),
        "steps": result.steps,
        "workers": trainer.train_batches.num_workers,
        "threads": torch.get_num_threads(),
        "setup_s": fit_started - started,
        "train_s": trained - fit_started,
        "eval_s": finished - trained,
        "epoch_end_acc": [last.max_val_acc, last.min_val_acc],
        "accuracies": accuracies,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _psutil() -> Any:
    """psutil: installed, or the copy Ray ships in ``ray/thirdparty_files`` (found without
    importing Ray)."""
    try:
        import psutil
    except ImportError:
        import importlib.util

        ray = importlib.util.find_spec("ray")
        if ray is None or ray.origin is None:
            raise SystemExit("psutil is needed (pip install psutil, or install ray)") from None
        sys.path.append(str(Path(ray.origin).parent / "thirdparty_files"))
        import psutil
    return psutil


def _tree_memory(root: Any, with_pss: bool) -> tuple[int, int | None, int]:
    """(RSS bytes, PSS bytes or None, process count) of ``root`` and its descendants now."""
    psutil = _psutil()

    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, None, 0
    rss, pss, counted = 0, 0 if with_pss else None, 0
    for proc in procs:
        try:
            if pss is not None:
                info = proc.memory_full_info()
                rss += info.rss
                pss += info.pss
            else:
                rss += proc.memory_info().rss
            counted += 1
        except psutil.Error:  # a worker that just exited
            continue
    return rss, pss, counted


def measure_trees(argvs: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """Run ``python this_file argv`` for each of ``argvs`` at once (one, for a clean figure)
    and sample each process tree's memory every 50 ms (PSS every 10th sample: reading it walks
    the page tables); each one's RESULT line plus its peaks."""
    psutil = _psutil()

    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, __file__, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for argv in argvs
    ]
    roots = [psutil.Process(child.pid) for child in children]
    peaks = [{"rss": 0, "pss": 0, "procs": 0} for _ in children]
    walls = [0.0 for _ in children]
    samples = 0
    while any(child.returncode is None for child in children):
        for child, root, peak, i in zip(children, roots, peaks, range(len(walls)), strict=True):
            if child.returncode is not None or child.poll() is not None:
                walls[i] = walls[i] or time.perf_counter() - started
                continue
            rss, pss, procs = _tree_memory(root, with_pss=samples % 10 == 0)
            peak["rss"] = max(peak["rss"], rss)
            peak["pss"] = max(peak["pss"], pss or 0)
            peak["procs"] = max(peak["procs"], procs)
        samples += 1
        time.sleep(SAMPLE_S)
    results = []
    for argv, child, peak, wall in zip(argvs, children, peaks, walls, strict=True):
        out, err = child.communicate()
        lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
        if child.returncode or not lines:
            raise SystemExit(f"workload {argv} failed (exit {child.returncode}):\n{err[-3000:]}")
        figures = json.loads(lines[-1][len(RESULT_PREFIX) :])
        figures.update(
            wall_s=wall or time.perf_counter() - started,
            tree_rss_mb=peak["rss"] / 2**20,
            tree_pss_mb=peak["pss"] / 2**20,
            procs=peak["procs"],
            samples=samples,
            load=load_now(),
        )
        results.append(figures)
    return results


def memory_section(args: argparse.Namespace, names: dict[int, str]) -> list[dict[str, Any]]:
    """The peak-memory table; smaller sizes first. Drops the resolution (never the epoch) when
    the smallest size projects the largest past ``--budget`` seconds."""
    sizes = sorted(names)
    resolution = args.resolution
    print(f"## Peak memory: 1 epoch + BN recalibration + {EVALUATED_SUBNETS} subnet evaluations")
    print(f"load average before: {load_averages()}", flush=True)

    def argv(count: int, resolution: int) -> list[str]:
        return [
            "--_rss",
            str(args.workdir),
            names[count],
            str(resolution),
            str(args.batch),
            str(-1 if args.workers is None else args.workers),
            str(args.threads),
        ]

    if args.concurrent:  # the smoke run: all sizes at once, each its own process tree
        measured = measure_trees([argv(count, resolution) for count in sizes])
        rows = [
            {"count": count, "resolution": resolution, **figures}
            for count, figures in zip(sizes, measured, strict=True)
        ]
    while not args.concurrent:
        rows = []
        for count in sizes:
            (figures,) = measure_trees([argv(count, resolution)])
            rows.append({"count": count, "resolution": resolution, **figures})
            if count == sizes[0] and len(sizes) > 1:
                first = rows[0]
                scaled = first["train_s"] + first["eval_s"]  # what grows with the split
                projected = first["wall_s"] + scaled * (sizes[-1] / count - 1)
                if projected > args.budget and resolution > 32:
                    print(
                        f"{count} images took {rows[0]['wall_s']:.0f} s at {resolution} px, so "
                        f"{sizes[-1]} would take ~{projected / 60:.0f} min (> "
                        f"{args.budget / 60:.0f} min on this machine): resolution {resolution} "
                        f"-> {max(32, resolution // 2)} px, still one full epoch",
                        flush=True,
                    )
                    resolution = max(32, resolution // 2)
                    break
        else:
            break
    if args.concurrent:
        print("(sizes run concurrently: --quick; wall times overlap)")
    print()
    print(
        "| images | train imgs | px | steps | workers | wall s | train s | eval s | "
        "tree RSS peak MB | tree PSS peak MB | main ru_maxrss MB | procs | load |"
    )
    print("|" + "---|" * 13)
    for r in rows:
        print(
            f"| {r['count']} | {r['train_images']} | {r['resolution']} | {r['steps']} | "
            f"{r['workers']} | {r['wall_s']:.0f} | {r['train_s']:.0f} | {r['eval_s']:.0f} | "
            f"{r['tree_rss_mb']:.0f} | {r['tree_pss_mb']:.0f} | {r['ru_maxrss_mb']:.0f} | "
            f"{r['procs']} | {r['load']} |"
        )
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        ratio = large["tree_rss_mb"] / small["tree_rss_mb"]
        print()
        print(
            f"peak RSS {large['count']}/{small['count']}: tree {ratio:.3f}x (target <= 1.2x), "
            f"tree PSS {large['tree_pss_mb'] / small['tree_pss_mb']:.3f}x, main ru_maxrss "
            f"{large['ru_maxrss_mb'] / small['ru_maxrss_mb']:.3f}x"
        )
    print(
        f"noise: RSS sampled every {SAMPLE_S * 1e3:.0f} ms (PSS every {SAMPLE_S * 1e4:.0f} ms), "
        "so a peak shorter than that can be missed; ru_maxrss is exact for the main process"
    )
    for r in rows:
        accs = ", ".join(f"{a:.1f}" for a in r["accuracies"])
        print(f"val top-1 (%) after 1 epoch, {r['count']} images: {accs} (min, max, 3 random)")
    print(flush=True)
    return rows


# --- loader throughput vs a training step ----------------------------------------------------


def spread(values: Sequence[float]) -> str:
    """Median, range and the range as a share of the median."""
    median = statistics.median(values)
    share = (max(values) - min(values)) / median * 100 if median else 0.0
    return f"{min(values):.0f}-{max(values):.0f} ({share:.0f}%)"


def loader_rates(
    split: Any, *, workers: int, batch: int, warmup: int, batches: int, repeats: int
) -> list[float]:
    """Images/s at which ``TrainBatches`` delivers batches ``warmup..warmup + batches`` of an
    epoch, one epoch per repeat (epoch 0 warms the workers up and is not counted)."""
    from nas.data.loading import TrainBatches

    loader = TrainBatches(split, batch_size=batch, seed=0, num_workers=workers)
    needed = warmup + batches
    if loader.steps_per_epoch < needed:
        raise SystemExit(
            f"the train split has {loader.steps_per_epoch} batches of {batch}; {needed} needed"
        )
    rates = []
    for epoch in range(repeats + 1):
        start = 0.0
        for i, _ in enumerate(loader.epoch(epoch)):
            if i == warmup:
                start = time.perf_counter()
            if i == needed:
                break
        if epoch > 0:
            rates.append(batches * batch / (time.perf_counter() - start))
    del loader  # its persistent workers exit with it
    return rates


def min_subnet_step(preset: str = "imagenet") -> tuple[Callable[[Any, Any], None], str]:
    """One SGD step (forward, backward, optimizer) of the extracted min subnet of Once-for-All
    MobileNetV3 at ``preset``, in train mode; and a description of the model."""
    import torch
    import torch.nn.functional as F

    import search_spaces

    space = search_spaces.get("ofa_mbv3", preset=preset, num_classes=NUM_CLASSES)
    torch.manual_seed(0)
    supernet = space.build_supernet()
    arch = space.sample(np.random.default_rng(0), "min")
    model = space.extract(supernet, arch).train()
    del supernet
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    macs = int(space.complexity_batch([arch])[0][0])

    def step(images: Any, labels: Any) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return step, f"ofa_mbv3 {preset} min subnet ({macs / 1e6:.0f} MMACs at {arch.resolution} px)"


def step_rates(
    step: Callable[[Any, Any], None], *, batch: int, resolution: int, repeats: int
) -> list[float]:
    """Images/s of ``repeats`` steps on one fixed random batch, after one warm-up step."""
    import torch

    images = torch.randn(batch, 3, resolution, resolution)
    labels = torch.randint(0, NUM_CLASSES, (batch,))
    step(images, labels)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        step(images, labels)
        rates.append(batch / (time.perf_counter() - started))
    return rates


def fed_step_rates(
    step: Callable[[Any, Any], None], split: Any, *, workers: int, batch: int, steps: int
) -> list[float]:
    """Images/s of each of ``steps`` steps fed by ``TrainBatches`` (wait for the batch + step),
    after one warm-up step; the workers and the step share the CPUs."""
    from nas.data.loading import TrainBatches

    loader = TrainBatches(split, batch_size=batch, seed=0, num_workers=workers)
    rates = []
    last = 0.0
    for i, (images, labels) in enumerate(loader.epoch(0)):
        step(images, labels)
        now = time.perf_counter()
        if i >= 1:
            rates.append(batch / (now - last))
        last = now
        if i == steps:
            break
    del loader
    return rates


def throughput_section(args: argparse.Namespace, name: str) -> None:
    import torch

    from nas.data import DatasetSpec, load_dataset

    spec = DatasetSpec(
        kind="imagefolder", root=name, resolution=args.px, augment="resized_crop_flip"
    )
    split = load_dataset(spec, data_root=args.workdir).train
    print(
        f"## Loader vs training step at {args.px} px, batch {args.loader_batch}: "
        f"{len(split)} train images of {name}"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads in this process, "
        f"{os.cpu_count()} CPUs; loader: batches {args.warmup}..{args.warmup + args.batches} "
        f"of each epoch, {args.repeats} epochs, median; step: {args.repeats} steps after 1 "
        "warm-up, median"
    )
    print(f"load average before: {load_averages()}", flush=True)
    loader: dict[int, list[float]] = {}
    loads: dict[int, str] = {}
    for workers in args.loader_workers:
        loader[workers] = loader_rates(
            split,
            workers=workers,
            batch=args.loader_batch,
            warmup=args.warmup,
            batches=args.batches,
            repeats=args.repeats,
        )
        loads[workers] = load_now()
    print(f"load average before the step: {load_averages()}", flush=True)
    step, model = min_subnet_step(args.step_preset)
    steps: dict[int, tuple[list[float], str]] = {}
    for threads in args.step_threads:
        torch.set_num_threads(threads)
        rates = step_rates(
            step, batch=args.step_batch, resolution=args.px, repeats=args.step_repeats
        )
        steps[threads] = (rates, load_now())
    torch.set_num_threads(args.threads)
    fastest = max(steps, key=lambda t: statistics.median(steps[t][0]))
    step_median = statistics.median(steps[fastest][0])
    fed_workers = max(args.loader_workers)
    fed = fed_step_rates(
        step, split, workers=fed_workers, batch=args.step_batch, steps=args.step_repeats
    )
    fed_load = load_now()
    print()
    print("| what | images/s (median) | range (spread) | vs fastest step | load |")
    print("|---|---|---|---|---|")
    for workers, values in loader.items():
        median = statistics.median(values)
        print(
            f"| loader, {workers} workers | {median:.0f} | {spread(values)} | "
            f"{median / step_median:.2f}x | {loads[workers]} |"
        )
    for threads, (rates, load) in steps.items():
        median = statistics.median(rates)
        print(
            f"| step, batch {args.step_batch}, {threads} threads (fixed batch) | {median:.1f} | "
            f"{spread(rates)} | {median / step_median:.2f}x | {load} |"
        )
    fed_median = statistics.median(fed)
    print(
        f"| step ({args.threads} threads) fed by the {fed_workers}-worker loader | "
        f"{fed_median:.1f} | {spread(fed)} | {fed_median / step_median:.2f}x | {fed_load} |"
    )
    print()
    print(f"step: {model} run at {args.px} px, batch {args.step_batch}, SGD, train mode")
    if 2 in loader:
        ratio = statistics.median(loader[2]) / step_median
        verdict = "met" if ratio >= 1.5 else "NOT met"
        print(f"loader with 2 workers / step: {ratio:.2f}x (target >= 1.5x: {verdict})")
    print(flush=True)


# --- entry points ----------------------------------------------------------------------------


def _child(argv: list[str]) -> bool:
    """The subprocess modes (``--_write``, ``--_rss``); False when ``argv`` is neither."""
    if argv and argv[0] == "--_write":
        folder, start, stop, size = argv[1:5]
        print(write_images(Path(folder), int(start), int(stop), int(size)))
        return True
    if argv and argv[0] == "--_rss":
        data_root, name, resolution, batch, workers, threads = argv[1:7]
        figures = rss_workload(
            Path(data_root),
            name,
            resolution=int(resolution),
            batch=int(batch),
            workers=None if int(workers) < 0 else int(workers),
            threads=int(threads),
        )
        print(RESULT_PREFIX + json.dumps(figures), flush=True)
        return True
    return False


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if _child(argv):
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="image cache")
    parser.add_argument("--sizes", nargs="+", type=int, default=[2000, 20000])
    parser.add_argument("--image-size", type=int, default=256, help="side of the JPEGs")
    parser.add_argument("--resolution", type=int, default=64, help="training resolution")
    parser.add_argument("--batch", type=int, default=64, help="training batch (memory table)")
    parser.add_argument("--workers", type=int, default=None, help="default: the pipeline's")
    parser.add_argument(
        "--budget", type=float, default=600.0, help="seconds the largest size may take"
    )
    parser.add_argument("--px", type=int, default=224, help="loader and step resolution")
    parser.add_argument("--loader-batch", type=int, default=64)
    parser.add_argument("--step-batch", type=int, default=64)
    parser.add_argument("--loader-workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--warmup", type=int, default=2, help="batches before the clock")
    parser.add_argument("--batches", type=int, default=8, help="timed batches per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="loader epochs timed")
    parser.add_argument("--step-repeats", type=int, default=3, help="steps timed")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads: training, 0-worker loader"
    )
    parser.add_argument("--step-threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--step-preset", default="imagenet", choices=["imagenet", "tiny"])
    parser.add_argument(
        "--concurrent", action="store_true", help="run the sizes' processes at once (--quick)"
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.image_size, args.resolution, args.batch = [50, 100], 96, 32, 16
        args.px, args.loader_batch, args.step_batch = 32, 16, 16
        args.warmup, args.batches, args.repeats, args.step_repeats = 1, 2, 2, 2
        args.step_threads, args.step_preset, args.concurrent = [1], "tiny", True
    args.workdir = args.workdir.resolve()
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        run(args)
    finally:
        torch.set_num_threads(threads)  # main() may run inside another process (the tests)


def run(args: argparse.Namespace) -> None:
    print(
        f"data_pipeline: {os.cpu_count()} CPUs, load average {load_averages()}, images in "
        f"{args.workdir}"
    )
    names = {}
    for count in sorted(args.sizes):
        names[count], mean_kb = imagefolder(args.workdir, count, size=args.image_size)
        print(f"{names[count]}: {count} {args.image_size} px JPEGs, {mean_kb:.1f} KB each")
    print(flush=True)
    if not args.skip_memory:
        memory_section(args, names)
    if not args.skip_throughput:
        throughput_section(args, names[max(names)])


if __name__ == "__main__":
    main()
