"""Elastic kernel size shared by the dynamic convolutions.

Owns the largest kernel, the choice of active kernel size and Once-for-All's kernel
transformation matrices (arXiv:1908.09791, section 3.2): a kernel of size k is the centre of
the next bigger kernel, mapped through a learned (k*k x k*k) matrix shared across channels,
so small kernels need not reuse the big kernel's centre verbatim.

With transforms, the crops are folded into the matrices: ``centre(w) @ M`` equals
``flat(w) @ (E @ M)`` where ``E`` is the constant 0/1 matrix that picks the centre, so a kernel
of any size is one matrix product of the flat largest kernel with a (K*K x k*k) matrix
composed from small matrices. That is 4 matrix products for 7 -> 3 instead of 4 slices, 2
copies and 2 products, and the backward pass allocates no cropped zero-filled gradients: in a
training step the work no longer grows with the number of shrink steps, only with channels.
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
                # not persistent: a constant of the sizes, not state (checkpoints stay as they are)
                self.register_buffer(f"_centre_{big}to{small}", _centre(big, small), False)
        self._plans = {size: self._plan(size) for size in self.kernel_sizes}
        self._active_kernel_size = k
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default init

    def _plan(self, size: int) -> tuple[str, ...]:
        """Keys of the transforms from the largest kernel down to ``size`` (none without them)."""
        if not self.kernel_transform:
            return ()
        keys: list[str] = []
        big = self.max_kernel_size
        for small in reversed(self.kernel_sizes):
            if small < big and small >= size:
                keys.append(f"{big}to{small}")
                big = small
        return tuple(keys)

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

        Without transforms this is one crop (``leading_slice``); with them the channel slice
        goes through the composed transformation matrix.
        """
        plan = self._plans.get(kernel_size)
        if plan is None:
            raise ValueError(f"kernel_size must be one of {self.kernel_sizes}, got {kernel_size!r}")
        if not self.kernel_transform:
            margin = (self.max_kernel_size - kernel_size) // 2
            return leading_slice(self.weight, channels, margin)
        weight = leading_slice(self.weight, channels)
        if not plan:
            return weight
        matrix: Tensor | None = None
        for key in plan:
            step = getattr(self, f"_centre_{key}") @ self.kernel_transforms[key]
            matrix = step if matrix is None else matrix @ step
        assert matrix is not None
        big = self.max_kernel_size * self.max_kernel_size
        flat = weight.reshape(-1, big) @ matrix
        return flat.view(weight.size(0), weight.size(1), kernel_size, kernel_size)

    def extra_repr(self) -> str:
        return (
            f"kernel_sizes={self.kernel_sizes}, stride={self.stride}, dilation={self.dilation}, "
            f"kernel_transform={self.kernel_transform}"
        )


def _centre(big: int, small: int) -> Tensor:
    """``(big*big, small*small)`` 0/1 matrix: ``flat(w) @ it == flat(centre crop of w)``."""
    start = (big - small) // 2
    rows = torch.arange(big * big).view(big, big)[start : start + small, start : start + small]
    matrix = torch.zeros(big * big, small * small)
    matrix[rows.reshape(-1), torch.arange(small * small)] = 1.0
    return matrix
