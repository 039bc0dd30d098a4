"""The stages after training: building the predictor, searching, exporting.

Each is a function of a ``workers.jobs.StageContext``; each resumes from what an interrupted
attempt left on disk (the measured subnets, the fitted predictor, the finished exports) and
writes its files atomically, so a stage that fails leaves its partial files and the results
of the stages before it intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.cluster import connect_ray
from workers.results import RESULTS_NAME, read_results
from workers.trained import JobFiles, dataset_path, predictor_path

if TYPE_CHECKING:
    from nas.predictors import AccuracyRecord
    from workers.jobs import StageContext

#: The artifact kind of each export format; files are ``exports/<arch_id>/subnet.*``.
EXPORT_KINDS: dict[str, str] = {
    "onnx": "onnx",
    "torchscript": "torchscript",
    "pytorch": "pytorch_zip",
}
EXPORT_STEM = "subnet"
#: The most actors measuring subnets at once (each holds a supernet and the dataset).
MAX_ACTORS = 8


def write_atomically(path: Path, data: bytes) -> None:
    """A reader (or a resumed attempt) sees the whole file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def pool_size(wanted: int) -> int:
    """Actors that can start now: one per free CPU of the Ray cluster (an actor waiting for a
    CPU would hold its share of the work forever), at least one."""
    connect_ray()
    import ray

    free = int(ray.available_resources().get("CPU", 0))
    return max(1, min(free, wanted, MAX_ACTORS))


def accuracy_job(ctx: StageContext, num_subnets: int) -> Any:
    """The ``workers.accuracy`` job that measures this job's subnets on the holdout split."""
    import ray

    from workers.accuracy import AccuracyDatasetJob, evaluator_gpus
    from workers.trained import checkpoint_path

    request = ctx.request
    gpus = evaluator_gpus(request.placement.evaluator_gpus, ray.cluster_resources().get("GPU", 0.0))
    return AccuracyDatasetJob(
        space=request.space,
        preset=request.preset,
        dataset=request.dataset,
        checkpoint=checkpoint_path(ctx.job_dir),
        num_subnets=max(num_subnets, 2),
        seed=request.search.seed,
        num_actors=pool_size(max(1, num_subnets // 8)),
        chunk_size=4,
        num_gpus=gpus,
    )


# --- building_predictor ------------------------------------------------------------------------


def _measure_dataset(ctx: StageContext) -> list[AccuracyRecord]:
    """Measure the stratified subnets, appending each finished group to a partial file that a
    resumed attempt continues from."""
    import search_spaces
    from nas.predictors import AccuracyRecord
    from workers.accuracy import SubnetEvaluatorPool, choose_archs

    job = accuracy_job(ctx, ctx.request.search.evaluations)
    archs = choose_archs(job)
    space = search_spaces.get(job.space, preset=job.preset)
    ids = [str(space.arch_from_dict(a).id) for a in archs]
    partial = dataset_path(ctx.job_dir).with_suffix(".partial.jsonl")
    done: dict[str, AccuracyRecord] = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            try:
                record = AccuracyRecord.model_validate_json(line)
            except ValueError:  # the line a killed attempt was writing
                continue
            done[record.id] = record
        ctx.log(f"resuming the accuracy dataset: {len(done)} of {len(archs)} subnets measured")
    todo = [a for a, i in zip(archs, ids, strict=True) if i not in done]
    group = job.chunk_size * job.num_actors
    if todo:
        ctx.log(f"measuring {len(todo)} subnets on the holdout split ({job.num_actors} actors)")
        partial.parent.mkdir(parents=True, exist_ok=True)
        with SubnetEvaluatorPool(job, data_root=ctx.request.data_root) as pool:
            for start in range(0, len(todo), group):
                records = pool.measure(todo[start : start + group])
                with partial.open("a") as handle:
                    for record in records:
                        handle.write(record.model_dump_json() + "\n")
                        done[record.id] = record
                ctx.progress(0.9 * len(done) / len(archs))
    return [done[i] for i in ids]


def run_building_predictor(ctx: StageContext) -> None:
    """Measure ``search.evaluations`` subnets (stratified over MACs, plus the min and max) on
    the holdout split, fit the ``auto`` predictor on them, report its held-out scores and
    gate on them (``workers.health``: a warning by default, the job's failure if asked)."""
    from nas.data import load_dataset
    from nas.predictors import AccuracyDataset, PredictorSpec, holdout_report, predictor_to_bytes
    from workers.health import gate_predictor
    from workers.trained import build_space

    request = ctx.request
    dataset_file, predictor_file = dataset_path(ctx.job_dir), predictor_path(ctx.job_dir)
    if dataset_file.exists():
        dataset = AccuracyDataset.model_validate_json(dataset_file.read_bytes())
        ctx.log(f"accuracy dataset of {len(dataset.records)} subnets found; not measured again")
    else:
        records = _measure_dataset(ctx)
        dataset = AccuracyDataset(
            space=request.space, preset=request.preset, split="holdout", records=records
        )
        write_atomically(dataset_file, dataset.model_dump_json(indent=1).encode())
    ctx.artifact("accuracy_dataset", dataset_file)
    if not predictor_file.exists():
        data = load_dataset(request.dataset, data_root=request.data_root)
        x, y = dataset.arrays(build_space(request.space, request.preset, data))
        spec = PredictorSpec(kind="auto", seed=request.search.seed)
        report = holdout_report(spec.build(), x, y, seed=request.search.seed)
        predictor = spec.build().fit(x, y)
        chosen = getattr(getattr(predictor, "chosen", None), "name", predictor.name)
        ctx.metrics(
            key="building_predictor/holdout",
            message=f"predictor {chosen}: holdout RMSE {report.rmse:.2f} points, "
            f"Kendall tau {report.kendall_tau:.3f} ({len(y)} subnets)",
            data={**report.model_dump(), "chosen": chosen, "num_subnets": len(y)},
        )
        # Gated before the file is written: a resumed attempt that finds the file finds the
        # gate's result in the replayed metrics; one that does not, gates again.
        gate_predictor(ctx, report, [float(v) for v in y], data.num_classes)
        write_atomically(predictor_file, predictor_to_bytes(predictor))
    ctx.artifact("predictor", predictor_file)


# --- searching ---------------------------------------------------------------------------------


def run_searching(ctx: StageContext) -> None:
    """One front per device (``workers.searching``), verified, written as ``results.json``."""
    from workers.searching import search_fronts

    path = search_fronts(ctx)
    ctx.results(path)


# --- exporting ---------------------------------------------------------------------------------


def exported_subnets(ctx: StageContext) -> list[tuple[str, dict[str, Any], bool]]:
    """(arch_id, arch, fine-tuned) of each front's best subnet (its most accurate member
    within the budget, else its first) and of every subnet the finetuning stage trained,
    each once: a fine-tuned subnet is exported with its fine-tuned weights."""
    results = read_results(ctx.job_dir / RESULTS_NAME)
    chosen: dict[str, dict[str, Any]] = {}
    for front in results.fronts:
        arch_id = front.best or (front.members[0] if front.members else None)
        if arch_id is not None:
            chosen.setdefault(arch_id, results.subnet(arch_id).arch)
    for subnet in results.subnets:
        if subnet.finetuned is not None:
            chosen.setdefault(subnet.arch_id, subnet.arch)
    return [
        (arch_id, arch, results.subnet(arch_id).finetuned is not None)
        for arch_id, arch in chosen.items()
    ]


def run_exporting(ctx: StageContext) -> None:
    """ONNX, TorchScript and the weights zip of every chosen subnet, under
    ``exports/<arch_id>/`` (fine-tuned weights where the subnet was fine-tuned; the inherited
    ones stay exportable on demand); a subnet whose directory is complete is not exported
    again."""
    import shutil

    from nas.export.formats import file_name
    from workers.specialize import export_subnet_files

    files = JobFiles.of(ctx.request)
    chosen = exported_subnets(ctx)
    names = {fmt: file_name(EXPORT_STEM, fmt) for fmt in EXPORT_KINDS}  # type: ignore[arg-type]
    for index, (arch_id, arch, finetuned) in enumerate(chosen):
        out = ctx.job_dir / "exports" / arch_id
        if not all((out / name).exists() for name in names.values()):
            partial = out.with_name(arch_id + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            export_subnet_files(
                files,
                arch=arch,
                formats=list(EXPORT_KINDS),
                out_dir=partial,
                weights="finetuned" if finetuned else "inherited",
            )
            shutil.rmtree(out, ignore_errors=True)
            partial.replace(out)
        for fmt, kind in EXPORT_KINDS.items():
            ctx.artifact(kind, out / names[fmt], arch_id=arch_id)  # type: ignore[arg-type]
        ctx.progress((index + 1) / len(chosen))
    tuned = sum(finetuned for _, _, finetuned in chosen)
    ctx.log(
        f"exported {len(chosen)} subnets ({tuned} with fine-tuned weights) as "
        f"{', '.join(EXPORT_KINDS)}"
    )
