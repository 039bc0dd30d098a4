"""Dropout and drop-connect that only the largest subnet gets (BigNAS section 3.3: small
subnets underfit, so regularising them too hurts; the largest one overfits)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


class LargestOnlyRegularization:
    """Switches the supernet's dropout and drop-connect on for the largest subnet only.

    Drop-connect (stochastic depth) is applied by a forward hook to every block that exposes
    ``residual = True`` for its active configuration: ``x + mask * (block(x) - x)``.
    """

    def __init__(self, supernet: nn.Module, *, dropout: float | None, drop_connect: float):
        self._dropouts = [m for m in supernet.modules() if isinstance(m, nn.Dropout)]
        self._dropout = [m.p if dropout is None else dropout for m in self._dropouts]
        self.drop_connect = drop_connect
        self._active = False
        self._handles: list[RemovableHandle] = []
        if drop_connect > 0:
            for module in supernet.modules():
                if hasattr(module, "residual"):
                    self._handles.append(module.register_forward_hook(self._drop_path))

    def use(self, *, largest: bool) -> None:
        self._active = largest
        for module, p in zip(self._dropouts, self._dropout, strict=True):
            module.p = p if largest else 0.0

    def _drop_path(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> torch.Tensor | None:
        if not (self._active and module.training and getattr(module, "residual", False)):
            return None
        x = inputs[0]
        keep = 1.0 - self.drop_connect
        mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
        return x + (output - x) * (mask / keep)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
