"""A job's trained supernet, its data and its fitted predictor, loaded once per process.

Specialising a subnet or exporting one on demand must answer in seconds, and loading the
dataset and the checkpoint is most of that; so a small LRU keeps the last few jobs loaded,
keyed by the job directory and the files' modification times (a retrained job reloads).
The supernet is stateful (the active arch, BN statistics), so every use holds the job's lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from nas.data import DatasetSpec

if TYPE_CHECKING:
    from workers.spec import JobRequest

#: Where the stages put what they produce, relative to the job directory.
SUPERNET_DIR = "supernet"
PREDICTOR_DIR = "predictor"
DATASET_NAME = "accuracy_dataset.json"
PREDICTOR_NAME = "predictor.json"
CACHE_SIZE = 4


def checkpoint_path(job_dir: Path) -> Path:
    """The trained supernet's checkpoint: a service job keeps it under ``supernet/``; a
    ``nas train`` output directory (which ``nas search`` and ``nas finetune`` take as a job
    directory) at its top."""
    from nas.training import CHECKPOINT_NAME

    nested, top = job_dir / SUPERNET_DIR / CHECKPOINT_NAME, job_dir / CHECKPOINT_NAME
    return top if top.is_file() and not nested.exists() else nested


def predictor_path(job_dir: Path) -> Path:
    return job_dir / PREDICTOR_DIR / PREDICTOR_NAME


def dataset_path(job_dir: Path) -> Path:
    return job_dir / PREDICTOR_DIR / DATASET_NAME


def build_space(space: str, preset: str, data: Any) -> Any:
    """The space sized for the job's data (classes and channels change the head and MACs)."""
    import search_spaces

    return search_spaces.get(
        space, preset=preset, num_classes=data.num_classes, in_channels=data.in_channels
    )


class TrainedJob:
    """The loaded pieces of one trained job; use under ``lock``."""

    def __init__(
        self, job_dir: Path, space: str, preset: str, dataset: DatasetSpec, data_root: Path
    ) -> None:
        from nas.data import load_dataset

        checkpoint = checkpoint_path(job_dir)
        if not checkpoint.exists():
            raise FileNotFoundError(
                f"job_dir: {job_dir} holds no trained supernet ({checkpoint} is missing)"
            )
        self.job_dir = job_dir
        self.data = load_dataset(dataset, data_root=data_root)
        self.space = build_space(space, preset, self.data)
        self.lock = threading.RLock()
        self._val: Any = None
        self._predictor: Any = None

    @property
    def val(self) -> Any:
        """``SupernetAccuracy`` on val (the checkpoint loaded on first use)."""
        if self._val is None:
            from nas.predictors import SupernetAccuracy
            from nas.training import load_checkpoint

            state = load_checkpoint(checkpoint_path(self.job_dir))
            self._val = SupernetAccuracy.from_checkpoint(self.space, self.data, state, split="val")
        return self._val

    @property
    def predictor(self) -> Any:
        """The accuracy predictor the building_predictor stage fitted."""
        if self._predictor is None:
            from nas.predictors import predictor_from_bytes

            path = predictor_path(self.job_dir)
            if not path.exists():
                raise FileNotFoundError(
                    f"job_dir: {self.job_dir} has no fitted predictor ({path} is missing); "
                    "the job's building_predictor stage has not finished"
                )
            self._predictor = predictor_from_bytes(path.read_bytes())
        return self._predictor

    def measure_val(self, archs: list[Any]) -> np.ndarray:
        """Top-1 (%) on val of each arch from the supernet, BN recalibrated."""
        with self.lock:
            return self.val(archs)

    def extract(self, arch: Any) -> Any:
        """The static subnet of ``arch`` with its own recalibrated BN statistics, eval mode, on
        the CPU (exports and host timing run there, wherever the supernet evaluates)."""
        from nas.training import recalibrate_bn

        with self.lock:
            val = self.val
            recalibrate_bn(val.supernet, arch, val.calibration, val.num_batches)
            return self.space.extract(val.supernet, arch).cpu().eval()


_cache: OrderedDict[tuple[Any, ...], TrainedJob] = OrderedDict()
_cache_lock = threading.Lock()


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


class JobFiles(BaseModel):
    """Where a trained job's files are and what it was trained on: what any process (an API
    request, a Ray task, a Tune trial, a shell user) needs to load it. Small, so it travels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_dir: Path
    space: str
    preset: str
    dataset: DatasetSpec
    data_root: Path

    @classmethod
    def of(cls, request: JobRequest) -> JobFiles:
        """The files of a running job's ``request``."""
        return cls(
            job_dir=request.job_dir,
            space=request.space,
            preset=request.preset,
            dataset=request.dataset,
            data_root=request.data_root,
        )

    def load(self) -> TrainedJob:
        """The job's ``TrainedJob``, from this process's cache when its files have not
        changed."""
        job_dir = self.job_dir.resolve()
        key = (
            str(job_dir),
            self.space,
            self.preset,
            self.dataset.model_dump_json(),
            str(self.data_root.resolve()),
            _mtime(checkpoint_path(job_dir)),
            _mtime(predictor_path(job_dir)),
        )
        with _cache_lock:
            found = _cache.get(key)
            if found is not None:
                _cache.move_to_end(key)
                return found
        loaded = TrainedJob(job_dir, self.space, self.preset, self.dataset, self.data_root)
        with _cache_lock:
            _cache[key] = loaded
            _cache.move_to_end(key)
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        return loaded


def load_request(request: JobRequest) -> TrainedJob:
    """The trained job of a running ``request`` (its stages after training)."""
    return JobFiles.of(request).load()
