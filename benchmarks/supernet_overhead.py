"""Cost of weight sharing: a subnet trained inside its supernet vs the same subnet extracted.

For every registered space, preset, batch size and the min / mid / max subnet, times one
training step's forward + backward (train mode, BN on batch statistics) of the supernet with
that subnet active and of the extracted static model, interleaved, and prints the medians and
the median ratio of adjacent pairs. The target is a ratio <= 1.10: the supernet should cost
little beyond slicing. Only forward + backward is timed; clearing the gradients afterwards
(the optimizer's job, which walks all of a supernet's parameters whatever the subnet) is not.

    python benchmarks/supernet_overhead.py                  # everything, ~20 min on 2 cores
    python benchmarks/supernet_overhead.py --quick          # fewer repeats, batch 8 only
    python benchmarks/supernet_overhead.py --spaces ofa_mbv3 --presets tiny
    python benchmarks/supernet_overhead.py --presets tiny --floor   # + the slicing-free bound

``--floor`` adds a third model to each cell: the supernet with every active weight slice handed
over ready-made (precomputed leaves instead of ``nas.ops.leading_slice``). Its ratio bounds what
any cheaper way of slicing could reach; what remains over the static model is the dynamic
modules' Python, the kernel transformation products (Once-for-All) and their autograd.

ImageNet presets run at the space's smallest resolution (the ``px`` column says which) to keep
CPU time sane; tiny presets run at each arch's own resolution.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from torch import nn

import nas.ops.slicing
import search_spaces
from search_spaces import SearchSpace

#: The one function through which dynamic ops slice shared parameters (``--floor`` replaces it).
_LEADING_SLICE = nas.ops.slicing.leading_slice

#: Fewest interleaved pairs per cell, however slow its steps (multi-second ImageNet steps vary
#: by 20% or more from one to the next on a shared 2-core machine).
MIN_REPEATS = 5


def middle_arch(space: SearchSpace) -> Any:
    """The arch taking the middle choice of every dimension."""
    data: dict[str, Any] = {
        field: [allowed[(len(allowed) - 1) // 2] for allowed in positions]
        for field, positions in space.choices().items()
    }
    data["resolution"] = data["resolution"][0]
    return space.arch_from_dict(data)


def _step(
    model: nn.Module,
    x: torch.Tensor,
    *,
    leaves: Iterable[torch.Tensor] = (),
    around: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Callable[[], float]:
    """One forward + backward; returns its seconds. Gradients are cleared after the clock stops.

    Clearing is the optimizer's work (``zero_grad`` walks every parameter of the model, 4,438
    for the tiny NASNet supernet against 42 for its subnet), not the subnet's forward and
    backward, so it stays outside the timed region for both models. ``leaves`` are more
    tensors whose gradients to clear; ``around`` is entered outside the clock too.
    """
    params = [*model.parameters(), *leaves]

    def run() -> float:
        with around():
            start = time.perf_counter()
            model(x).sum().backward()
            elapsed = time.perf_counter() - start
        for p in params:
            if p.grad is not None:
                p.grad = None
        return elapsed

    return run


class Presliced:
    """The supernet with each active weight slice precomputed as a leaf tensor: a lower bound.

    The first forward records every slice of a parameter that the dynamic ops ask
    ``leading_slice`` for; later ones get the same tensors back at no cost, so their steps time
    everything except slicing. Crops of computed tensors (the kernels that Once-for-All's
    transforms produce) are part of the transform and stay computed.
    """

    def __init__(self, supernet: nn.Module, x: torch.Tensor) -> None:
        self.supernet = supernet
        self.x = x
        self.slices: dict[tuple[int, tuple[int, ...], int], torch.Tensor] = {}
        self.users = [
            module
            for module in list(sys.modules.values())
            if getattr(module, "leading_slice", None) is _LEADING_SLICE
        ]
        with torch.no_grad(), self._serving():
            supernet(x)

    def _take(self, weight: torch.Tensor, sizes: Any, margin: int = 0) -> torch.Tensor:
        if not isinstance(weight, nn.Parameter):  # a transformed kernel's crop (OFA): computed
            return _LEADING_SLICE(weight, sizes, margin)
        key = (id(weight), tuple(sizes), margin)
        cached = self.slices.get(key)
        if cached is None:
            cached = _LEADING_SLICE(weight, sizes, margin)
            if cached is not weight:
                cached = cached.detach().clone().requires_grad_(weight.requires_grad)
            self.slices[key] = cached
        return cached

    @contextlib.contextmanager
    def _serving(self) -> Iterator[None]:
        for module in self.users:
            module.leading_slice = self._take  # type: ignore[attr-defined]
        try:
            yield
        finally:
            for module in self.users:
                module.leading_slice = _LEADING_SLICE  # type: ignore[attr-defined]

    def step(self) -> Callable[[], float]:
        """``_step`` of the supernet with the recorded slices served."""
        return _step(self.supernet, self.x, leaves=self.slices.values(), around=self._serving)


def measure(
    space: SearchSpace,
    arch: Any,
    batch: int,
    size: int,
    repeats: int,
    budget: float,
    floor: bool = False,
) -> tuple[float, float, float, tuple[float, float], int, float | None]:
    """Median seconds of (supernet, static) steps, interleaved; the median of the ratios of
    each adjacent (supernet, static) pair and their quartiles (the cell's own noise); the
    repeats used; with ``floor``, the median ratio of the presliced supernet's step
    (``Presliced``) to the static step of the same round.

    Pairing cancels slow drift in the machine's speed (other tenants, page-fault storms of
    ImageNet-sized activations), which two independent medians of a few steps do not.
    """
    torch.manual_seed(0)
    supernet = space.build_supernet().train()
    supernet.set_active(arch)
    static = space.extract(supernet, arch).train()
    x = torch.randn(batch, space.in_channels, size, size)
    steps = [_step(supernet, x), _step(static, x)]
    if floor:
        steps.append(Presliced(supernet, x).step())
    for step in steps:  # warm-up: allocator, oneDNN primitive caches
        step()
    first = sum(step() for step in steps)
    repeats = max(MIN_REPEATS, min(repeats, int(budget / max(first, 1e-6))))
    times: list[list[float]] = [[] for _ in steps]
    for i in range(repeats):
        for j in range(len(steps)):  # rotate: none always runs on a warmer cache
            which = (i + j) % len(steps)
            times[which].append(steps[which]())
    ratios = [shared / alone for shared, alone in zip(times[0], times[1], strict=True)]
    floor_ratio = None
    if floor:
        floor_ratio = statistics.median(
            bound / alone for bound, alone in zip(times[2], times[1], strict=True)
        )
    q25, _, q75 = statistics.quantiles(ratios, n=4)
    return (
        statistics.median(times[0]),
        statistics.median(times[1]),
        statistics.median(ratios),
        (q25, q75),
        repeats,
        floor_ratio,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="*", default=search_spaces.names())
    parser.add_argument("--presets", nargs="*", default=["tiny", "imagenet"])
    parser.add_argument("--batches", nargs="*", type=int, default=[32, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=21, help="at most, per cell")
    parser.add_argument("--budget", type=float, default=8.0, help="seconds per cell, roughly")
    parser.add_argument("--quick", action="store_true", help="batch 8 only, 5 repeats")
    parser.add_argument(
        "--floor", action="store_true", help="also time the supernet with slicing for free"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.repeats, args.budget = [8], 5, 2.0
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, forward + backward, train mode")
    print()
    extra = " floor |" if args.floor else ""
    print(
        f"| space | preset | subnet | px | batch | supernet ms | static ms | ratio "
        f"| ratio q25-q75 |{extra} n |"
    )
    print("|" + "---|" * (11 if args.floor else 10))
    worst, worst_spread, over = 0.0, (0.0, 0.0), 0
    for name in args.spaces:
        for preset in args.presets:
            space = search_spaces.get(name, preset=preset)
            rng = np.random.default_rng(0)
            archs = {
                "min": space.sample(rng, "min"),
                "mid": middle_arch(space),
                "max": space.sample(rng, "max"),
            }
            small = space.default_resolution <= 64
            for batch in args.batches:
                for label, arch in archs.items():
                    size = arch.resolution if small else min(space.resolutions)
                    shared, alone, ratio, spread, n, bound = measure(
                        space, arch, batch, size, args.repeats, args.budget, args.floor
                    )
                    if ratio > worst:
                        worst, worst_spread = ratio, spread
                    over += spread[0] > 1.10
                    floor_cell = "" if bound is None else f" {bound:.3f} |"
                    print(
                        f"| {name} | {preset} | {label} | {size} | {batch} | "
                        f"{shared * 1e3:.1f} | {alone * 1e3:.1f} | {ratio:.3f} | "
                        f"{spread[0]:.3f}-{spread[1]:.3f} |{floor_cell} {n} |",
                        flush=True,
                    )
    print()
    print(
        f"worst ratio: {worst:.3f} (its pairs' quartiles {worst_spread[0]:.3f}-"
        f"{worst_spread[1]:.3f}; target <= 1.10); cells whose lower quartile is over 1.10: {over}"
    )


if __name__ == "__main__":
    main()
