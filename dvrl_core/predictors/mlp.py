"""The paper's multi-layer perceptron predictor, trained for many rollouts at once.

Architecture (the DVRL paper's predictor): input -> 100 ReLU -> 100 ReLU -> output (softmax for
classification, linear for regression). Training follows the official code's Keras ``fit``:
``epochs`` passes over the rows in mini-batches of ``batch_size``, Adam (lr 1e-3), each row's loss
weighted by its selection (0/1) and averaged over the mini-batch; every fit starts from the same
initial weights, drawn once from ``random_state``.

The R models of a batch are stacked along a leading axis and trained together: one mini-batch
order shared by all, one batched matrix product per layer, Adam's element-wise update on the
stacked weights (which is exactly R independent Adams).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..optim import Adam
from .base import BatchTrainer, Predictor, standardise_target


@dataclass
class _MLPModels:
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # (weight [R, in, out], bias [R, 1, out])


def _initial_layers(
    sizes: list[int], generator: torch.Generator, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Glorot-uniform weights and zero biases, as Keras' Dense defaults."""
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        weight = (torch.rand(fan_in, fan_out, generator=generator) * 2 - 1) * limit
        layers.append((weight.to(device), torch.zeros(1, fan_out, device=device)))
    return layers


def _forward(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """x: [m, d] shared by all models, or [R, m, d]; returns [R, m, out] logits."""
    h = x
    for index, (weight, bias) in enumerate(layers):
        h = (torch.matmul(h, weight) if h.dim() == 3 else torch.einsum("md,rdo->rmo", h, weight))
        h = h + bias
        if index < len(layers) - 1:
            h = torch.relu(h)
    return h


class _MLPTrainer(BatchTrainer):
    def __init__(self, predictor: MLP, x: torch.Tensor, y: torch.Tensor) -> None:
        self.task = predictor.task
        self.x = x.float()
        if self.task == "regression":
            self.y, self.mean, self.std = standardise_target(y)
            out = 1
        else:
            self.y = y
            out = predictor.n_classes
        self.epochs = predictor.epochs
        self.batch_size = predictor.batch_size
        self.learning_rate = predictor.learning_rate
        sizes = [x.shape[1], *predictor.hidden, out]
        self.seed = predictor.random_state
        self.initial = _initial_layers(sizes, torch.Generator().manual_seed(self.seed), x.device)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-row loss [R, b]."""
        if self.task == "regression":
            return (logits.squeeze(-1) - y) ** 2
        log_prob = torch.log_softmax(logits, dim=-1)
        return -torch.gather(log_prob, -1, y.expand(log_prob.shape[:-1]).unsqueeze(-1)).squeeze(-1)

    def fit(self, weights: torch.Tensor, rows: torch.Tensor | None = None) -> _MLPModels:
        with torch.enable_grad():  # DVRL calls fit under no_grad
            return self._fit(weights, rows)

    def _fit(self, weights: torch.Tensor, rows: torch.Tensor | None) -> _MLPModels:
        x = self.x if rows is None else self.x[rows]
        y = self.y if rows is None else self.y[rows]
        r, n = weights.shape
        weights = weights.float()
        params: list[torch.Tensor] = []
        for weight, bias in self.initial:
            params.append(weight.expand(r, -1, -1).clone().requires_grad_(True))
            params.append(bias.expand(r, -1, -1).clone().requires_grad_(True))
        optimiser = Adam(params, lr=self.learning_rate)
        # every fit draws the same mini-batch order, so a fit depends on its inputs only (not on
        # how many fits ran before): what makes interrupted-and-resumed runs exact
        order_generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=order_generator).to(x.device)
            for start in range(0, n, self.batch_size):
                batch = order[start : start + self.batch_size]
                layers = list(zip(params[0::2], params[1::2], strict=True))
                loss_rows = self._loss(_forward(layers, x[batch]), y[batch])
                # Keras' sample_weight: weighted sum over the mini-batch / mini-batch size
                loss = (loss_rows * weights[:, batch]).sum() / len(batch)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        return _MLPModels([(w.detach(), b.detach()) for w, b in zip(params[0::2], params[1::2],
                                                                        strict=True)])

    def predict(self, models: _MLPModels, x: torch.Tensor) -> torch.Tensor:
        logits = _forward(models.layers, x.float())
        if self.task == "regression":
            return logits.squeeze(-1) * self.std + self.mean
        return torch.softmax(logits, dim=-1)


class MLP(Predictor):
    """The paper's 100-100 ReLU network (classification or regression)."""

    name = "mlp"

    def __init__(
        self, task: str = "classification", n_classes: int = 2, *,
        hidden: tuple[int, ...] = (100, 100), epochs: int = 100, batch_size: int = 256,
        learning_rate: float = 1e-3, device="cpu", random_state: int = 0,
    ) -> None:
        super().__init__(task, n_classes, device=device, random_state=random_state)
        self.hidden = tuple(hidden)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.learning_rate = float(learning_rate)

    def params(self) -> dict:
        return {"hidden": list(self.hidden), "epochs": self.epochs,
                "batch_size": self.batch_size, "learning_rate": self.learning_rate}

    def trainer(self, x: torch.Tensor, y: torch.Tensor) -> BatchTrainer:
        return _MLPTrainer(self, x, y)
