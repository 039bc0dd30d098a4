"""A small MLP regressor in the style of Once-for-All's accuracy predictor (arXiv:1908.09791).

OFA feeds one-hot arch encodings through a few ReLU layers of a few hundred units and regresses
accuracy. Trained with torch (Adam, MSE on standardised targets, a fixed number of minibatch
steps so the cost does not grow with the dataset); predictions run in numpy from the exported
weights, so the search's hot path has no torch dispatch overhead and a stored predictor loads
without torch.
"""

from __future__ import annotations

import itertools
from typing import Any, Self

import numpy as np

from nas.predictors._arrays import (
    array_from_state,
    array_to_state,
    check_features,
    check_training_data,
)
from nas.predictors.base import Predictor


class MLPPredictor(Predictor):
    """ReLU MLP ``D -> hidden... -> 1``; deterministic given ``seed`` on a fixed thread count."""

    name = "mlp"

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] | list[int] = (128, 128, 128),
        steps: int = 800,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden: needs one or more positive layer widths, got {hidden!r}")
        for field, value in (("steps", steps), ("batch_size", batch_size)):
            if int(value) < 1:
                raise ValueError(f"{field}: must be >= 1, got {value!r}")
        if lr <= 0 or weight_decay < 0:
            raise ValueError(
                f"lr/weight_decay: need lr > 0, weight_decay >= 0; got {lr}, {weight_decay}"
            )
        self.hidden = tuple(int(h) for h in hidden)
        self.steps, self.batch_size = int(steps), int(batch_size)
        self.lr, self.weight_decay, self.seed = float(lr), float(weight_decay), int(seed)
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        self.y_mean, self.y_std = 0.0, 1.0

    def options(self) -> dict[str, Any]:
        return {
            "hidden": list(self.hidden),
            "steps": self.steps,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
        }

    def fit(self, x: np.ndarray, y: np.ndarray) -> Self:
        import torch
        from torch import nn

        features, targets = check_training_data(x, y)
        self.y_mean = float(targets.mean())
        self.y_std = float(targets.std()) or 1.0
        with torch.random.fork_rng(devices=[]):  # seeded init without touching global RNG
            torch.manual_seed(self.seed)
            widths = [features.shape[1], *self.hidden]
            modules: list[nn.Module] = []
            for fan_in, fan_out in itertools.pairwise(widths):
                modules += [nn.Linear(fan_in, fan_out), nn.ReLU()]
            modules.append(nn.Linear(widths[-1], 1))
            model = nn.Sequential(*modules)
        x = torch.from_numpy(features)
        t = torch.from_numpy(((targets - self.y_mean) / self.y_std).astype(np.float32))
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        generator = torch.Generator().manual_seed(self.seed)
        batch = min(self.batch_size, len(t))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.steps)
        for _ in range(self.steps):
            index = torch.randint(len(t), (batch,), generator=generator)
            loss = nn.functional.mse_loss(model(x[index]).squeeze(1), t[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        linears = [m for m in model if isinstance(m, nn.Linear)]
        self.layers = [
            (m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linears
        ]
        self.input_dim = features.shape[1]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        h = check_features(x, self._require_fitted())
        for weight, bias in self.layers[:-1]:
            h = h @ weight
            h += bias
            np.maximum(h, 0.0, out=h)
        weight, bias = self.layers[-1]
        out = (h @ weight)[:, 0] + bias[0]
        return out.astype(np.float64) * self.y_std + self.y_mean

    def _fitted_state(self) -> dict[str, Any]:
        return {
            "layers": [[array_to_state(w), array_to_state(b)] for w, b in self.layers],
            "y_mean": self.y_mean,
            "y_std": self.y_std,
        }

    def _load_fitted_state(self, state: dict[str, Any]) -> None:
        self.layers = [(array_from_state(w), array_from_state(b)) for w, b in state["layers"]]
        self.y_mean, self.y_std = float(state["y_mean"]), float(state["y_std"])
