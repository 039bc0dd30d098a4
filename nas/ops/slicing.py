"""The active slice of a shared weight, taken in as few autograd nodes as possible.

Every Python slice is an autograd node of its own whose backward allocates a zero tensor the
size of its input, and a slice of any dimension but the first leaves a strided view that the
convolution copies anyway. Cropping all dimensions at once with one negative constant pad
gives the same values as one contiguous copy with a single backward node. That saves about
10 us per conv layer in a microbenchmark; whole supernet steps moved by less than their noise.

A supernet step takes 80-150 slices, so the per-call Python counts too: the pad of each
(shape, sizes, margin) is worked out (and checked) once and cached, and the call goes straight
to ``torch.constant_pad_nd`` (about 2 us less per call than building the pad and ``F.pad``).

Every dynamic op takes its shared parameters' active slices through ``leading_slice`` and
nothing else, so the cost of weight sharing has one place to be measured or replaced
(``benchmarks/supernet_overhead.py --floor`` hands the slices over ready-made).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

#: How ``leading_slice`` cuts one (shape, sizes, margin): nothing (``None``), a prefix of the
#: first dimension (its length), or a negative constant pad (``torch.constant_pad_nd``'s list).
_Cut = int | tuple[int, ...] | None


def leading_slice(weight: Tensor, sizes: Sequence[int], margin: int = 0) -> Tensor:
    """``weight[:sizes[0], :sizes[1], ..., margin:-margin, margin:-margin]`` in one op.

    ``sizes`` keeps a prefix of each leading dimension; ``margin`` trims both ends of the last
    two (a centre crop of a square kernel). The weight itself comes back when nothing is cut,
    a view when only the first dimension is (a prefix of it is already contiguous), otherwise
    a contiguous copy. A size outside ``1..dimension`` or a margin that leaves no kernel raises.
    """
    cut = _cut(weight.shape, tuple(sizes), margin)
    if cut is None:
        return weight
    if isinstance(cut, int):
        return weight[:cut]
    return torch.constant_pad_nd(weight, cut)


@functools.lru_cache(maxsize=4096)
def _cut(shape: tuple[int, ...], sizes: tuple[int, ...], margin: int) -> _Cut:
    ndim = len(shape)
    if len(sizes) > ndim:
        raise ValueError(f"sizes {list(sizes)} has more entries than the weight's shape {shape}")
    for dim, (size, full) in enumerate(zip(sizes, shape, strict=False)):
        if not 1 <= size <= full:
            raise ValueError(f"sizes[{dim}] must be in 1..{full}, got {size}")
    if margin and (ndim < 2 or not 0 < 2 * margin < min(shape[-2:])):
        raise ValueError(f"margin {margin} leaves no kernel of a weight of shape {shape}")
    cuts = [size - full for size, full in zip(sizes, shape, strict=False)]
    if margin == 0 and not any(cuts[1:]):
        return sizes[0] if cuts and cuts[0] else None
    pad: list[int] = []
    for dim in range(ndim - 1, -1, -1):
        if margin and dim >= ndim - 2:
            pad += [-margin, -margin]
        else:
            pad += [0, cuts[dim] if dim < len(cuts) else 0]
    return tuple(pad)
