"""The active slice of a shared weight, taken in as few autograd nodes as possible.

Every Python slice is an autograd node of its own whose backward allocates a zero tensor the
size of its input, and a slice of any dimension but the first leaves a strided view that the
convolution copies anyway. Cropping all dimensions at once with one negative constant pad
gives the same values as one contiguous copy with a single backward node. That saves about
10 us per conv layer in a microbenchmark; whole supernet steps moved by less than their noise.

Every dynamic op takes its shared parameters' active slices through ``leading_slice`` and
nothing else, so the cost of weight sharing has one place to be measured or replaced
(``benchmarks/supernet_overhead.py --floor`` hands the slices over ready-made).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor


def leading_slice(weight: Tensor, sizes: Sequence[int], margin: int = 0) -> Tensor:
    """``weight[:sizes[0], :sizes[1], ..., margin:-margin, margin:-margin]`` in one op.

    ``sizes`` keeps a prefix of each leading dimension; ``margin`` trims both ends of the last
    two (a centre crop of a square kernel). The weight itself comes back when nothing is cut,
    a view when only the first dimension is (a prefix of it is already contiguous), otherwise
    a contiguous copy.
    """
    shape = weight.shape
    cuts = [size - full for size, full in zip(sizes, shape, strict=False)]
    if margin == 0 and not any(cuts[1:]):
        return weight[: sizes[0]] if cuts and cuts[0] else weight
    pad: list[int] = []
    for dim in range(weight.dim() - 1, -1, -1):
        if margin and dim >= weight.dim() - 2:
            pad += [-margin, -margin]
        else:
            pad += [0, cuts[dim] if dim < len(cuts) else 0]
    return F.pad(weight, pad)
