"""The built-in PyTorch MLPs (classifier, regressor): model, one epoch, evaluation.

Shared by Ray Train workers and Ray Tune trials. The model that is logged to MLflow wraps
the network with the training set's standardisation (and a softmax for classifiers), so
serving takes raw feature rows and answers class probabilities or values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

CLASSIFIER = "mlp_classifier"
REGRESSOR = "mlp_regressor"


class MLP(nn.Module):
    """Fully connected layers with ReLU and dropout."""

    def __init__(
        self, inputs: int, hidden: Sequence[int], outputs: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = inputs
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.net(x)
        return result


class Servable(nn.Module):
    """Raw features in; class probabilities (classifier) or a value (regressor) out."""

    def __init__(
        self, net: nn.Module, mean: Sequence[float], std: Sequence[float], classifier: bool
    ) -> None:
        super().__init__()
        self.net = net
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor([s or 1.0 for s in std], dtype=torch.float32))
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net((x - self.mean) / self.std)
        return torch.softmax(out, dim=-1) if self.classifier else out.squeeze(-1)


def build(trainer: str, inputs: int, params: dict[str, Any]) -> MLP:
    """The network of a built-in trainer."""
    hidden = [int(h) for h in params.get("hidden", [64, 32])]
    outputs = 2 if trainer == CLASSIFIER else 1
    return MLP(inputs, hidden, outputs, float(params.get("dropout", 0.0)))


def loss_fn(trainer: str) -> nn.Module:
    """Cross-entropy for the classifier, mean squared error for the regressor."""
    return nn.CrossEntropyLoss() if trainer == CLASSIFIER else nn.MSELoss()


def standardise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Scale features with the training set's statistics."""
    m = torch.tensor(list(mean), dtype=torch.float32)
    s = torch.tensor([v or 1.0 for v in std], dtype=torch.float32)
    return (x - m) / s


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    trainer: str,
) -> tuple[float, int]:
    """One pass over the batches; (mean loss, rows seen)."""
    model.train()
    criterion = loss_fn(trainer)
    total, rows = 0.0, 0
    for x, y in batches:
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out, y.long()) if trainer == CLASSIFIER else criterion(out.squeeze(-1), y)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(y)
        rows += len(y)
    return total / max(rows, 1), rows


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], trainer: str
) -> dict[str, float]:
    """Validation metrics: loss and accuracy (classifier) or loss, rmse, mae (regressor)."""
    model.eval()
    criterion = loss_fn(trainer)
    total = correct = abs_error = squares = 0.0
    rows = 0
    for x, y in batches:
        out = model(x)
        if trainer == CLASSIFIER:
            total += float(criterion(out, y.long())) * len(y)
            correct += float((out.argmax(dim=-1) == y.long()).sum())
        else:
            pred = out.squeeze(-1)
            total += float(criterion(pred, y)) * len(y)
            abs_error += float((pred - y).abs().sum())
            squares += float(((pred - y) ** 2).sum())
        rows += len(y)
    rows = max(rows, 1)
    if trainer == CLASSIFIER:
        return {"val_loss": total / rows, "val_accuracy": correct / rows}
    return {
        "val_loss": total / rows,
        "val_rmse": (squares / rows) ** 0.5,
        "val_mae": abs_error / rows,
    }
