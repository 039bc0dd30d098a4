"""Elastic kernel size shared by the dynamic convolutions.

Owns the largest kernel, the choice of active kernel size and Once-for-All's kernel
transformation matrices (arXiv:1908.09791, section 3.2): a kernel of size k is the centre of
the next bigger kernel, mapped through a learned (k*k x k*k) matrix shared across channels,
so small kernels need not reuse the big kernel's centre verbatim.

With transforms, each shrink step is one crop (``leading_slice``: a single pad node, the first
one fused with the channel slice) and one product with that step's matrix, as Once-for-All
does. Folding the crops into the matrices instead (``flat(w) @ (E @ M)`` with ``E`` the 0/1
centre picker) needs 4 products for 7 -> 3 against 2, and 6 backward products against 2 plus
2 pad backwards: tiny OFA supernet steps are 1-1.5% faster this way (same outputs, in-process
A/B of forward + backward, min and mid subnets, batch 8 and 32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nas.ops._checks import check_kernel_sizes, check_positive_int
from nas.ops.slicing import leading_slice


class ElasticKernelConv(nn.Module):
    """Base for convs whose weight is ``(out, in_per_group, K, K)`` with K the largest kernel."""

    def __init__(
        self,
        *,
        out_channels: int,
        in_channels_per_group: int,
        kernel_sizes: int | Sequence[int],
        stride: int,
        dilation: int,
        kernel_transform: bool,
    ) -> None:
        super().__init__()
        self.kernel_sizes = check_kernel_sizes(kernel_sizes)
        self.max_kernel_size = self.kernel_sizes[-1]
        self.stride = check_positive_int("stride", stride)
        self.dilation = check_positive_int("dilation", dilation)
        self.kernel_transform = bool(kernel_transform)
        k = self.max_kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels_per_group, k, k))
        self.kernel_transforms = nn.ParameterDict()
        if self.kernel_transform:
            for big, small in zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1], strict=True):
                self.kernel_transforms[f"{big}to{small}"] = nn.Parameter(torch.eye(small * small))
        self._plans = {size: self._plan(size) for size in self.kernel_sizes}
        self._active_kernel_size = k
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default init

    def _plan(self, size: int) -> tuple[tuple[str, int, int], ...]:
        """(transform key, crop margin, kernel size after) of each shrink step from the largest
        kernel down to ``size``; none without transforms."""
        if not self.kernel_transform:
            return ()
        steps: list[tuple[str, int, int]] = []
        big = self.max_kernel_size
        for small in reversed(self.kernel_sizes):
            if small < big and small >= size:
                steps.append((f"{big}to{small}", (big - small) // 2, small))
                big = small
        return tuple(steps)

    @property
    def active_kernel_size(self) -> int:
        return self._active_kernel_size

    @active_kernel_size.setter
    def active_kernel_size(self, value: int) -> None:
        if value not in self.kernel_sizes:
            raise ValueError(
                f"active_kernel_size must be one of {self.kernel_sizes}, got {value!r}"
            )
        self._active_kernel_size = value

    def padding_for(self, kernel_size: int) -> int:
        """'Same' padding, so every kernel choice yields the same output shape."""
        return self.dilation * (kernel_size // 2)

    def active_weight(self, channels: Sequence[int], kernel_size: int) -> Tensor:
        """The weight's leading ``channels`` slice as a ``kernel_size`` kernel.

        Without transforms this is one crop (``leading_slice``); with them every shrink step
        crops the previous kernel's centre and maps it through that step's matrix.
        """
        plan = self._plans.get(kernel_size)
        if plan is None:
            raise ValueError(f"kernel_size must be one of {self.kernel_sizes}, got {kernel_size!r}")
        if not plan:  # no transforms, or the largest kernel: a single crop
            margin = (self.max_kernel_size - kernel_size) // 2
            return leading_slice(self.weight, channels, margin)
        weight = self.weight
        for key, margin, small in plan:
            crop = leading_slice(weight, channels, margin)
            channels = ()  # the first crop took the channel slice along
            flat = crop.reshape(-1, small * small) @ self.kernel_transforms[key]
            weight = flat.view(crop.size(0), crop.size(1), small, small)
        return weight

    def extra_repr(self) -> str:
        return (
            f"kernel_sizes={self.kernel_sizes}, stride={self.stride}, dilation={self.dilation}, "
            f"kernel_transform={self.kernel_transform}"
        )
