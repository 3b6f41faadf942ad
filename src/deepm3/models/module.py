"""The one LightningModule: trains any ``SequentialRecommender`` and evaluates it the same way."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics import MeanMetric

from deepm3.errors import ConfigError
from deepm3.metrics import DEFAULT_KS, EVAL_MODES, metric_names, ranking_metrics, sampled_target_ranks, target_ranks
from deepm3.models.components.base import SequentialRecommender


class RecModule(L.LightningModule):
    """Wraps a network built from a plain-dict Hydra config (so checkpoints load with
    ``weights_only=True``): next-item training, full-ranking validation and test.

    Test ranks are kept per user (``test_ranks``) so callers can write per-user rows.
    ``eval_mode="sampled"`` also ranks each target among the batch's stored ``negatives`` and
    logs those metrics as ``<stage>/sampled_<metric>`` beside the full-ranking ones, which stay
    the monitored headline.
    """

    def __init__(
        self,
        net: dict[str, Any],
        num_items: int,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        loss: str = "ce",
        exclude_history: bool = True,
        ks: tuple[int, ...] | list[int] = DEFAULT_KS,
        monitor: str = "val/ndcg@10",
        eval_mode: str = "full",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net: SequentialRecommender = instantiate(net, num_items=num_items, _convert_="all")
        self.ks = tuple(ks)
        self.names = metric_names(self.ks)
        self.val_metrics = nn.ModuleDict({n.replace("@", "_at_"): MeanMetric() for n in self.names})
        self.test_metrics = nn.ModuleDict({n.replace("@", "_at_"): MeanMetric() for n in self.names})
        if eval_mode not in EVAL_MODES:
            raise ConfigError(f"eval.mode={eval_mode!r}; expected one of {list(EVAL_MODES)}")
        self.sampled = eval_mode == "sampled"
        self.sampled_metrics = nn.ModuleDict({
            stage: nn.ModuleDict({n.replace("@", "_at_"): MeanMetric() for n in self.names}) for stage in ("val", "test")
        })
        self._sampled_test_ranks: list[torch.Tensor] = []
        self.test_ranks: dict[str, torch.Tensor] = {}
        self._test_parts: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net.predict(batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.net.training_loss(batch, self.hparams.loss)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch["items"]))
        return loss

    def ranks(self, batch: dict[str, torch.Tensor], scores: torch.Tensor | None = None) -> torch.Tensor:
        """Pessimistic full-ranking rank of each sample's target (protocol §3)."""
        scores = self.net.predict(batch) if scores is None else scores
        targets = batch["targets"][:, -1]
        if self.hparams.exclude_history:
            return target_ranks(scores, targets, batch["history_rows"], batch["history_items"])
        return target_ranks(scores, targets)

    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: nn.ModuleDict, stage: str) -> torch.Tensor:
        scores = self.net.predict(batch)
        ranks = self.ranks(batch, scores)
        self._update(metrics, ranks)
        if self.sampled:
            sampled = sampled_target_ranks(scores, batch["targets"][:, -1], batch["negatives"])
            self._update(self.sampled_metrics[stage], sampled)
            if stage == "test":
                self._sampled_test_ranks.append(sampled.detach())
        return ranks

    def _update(self, metrics: nn.ModuleDict, ranks: torch.Tensor) -> None:
        for name, values in ranking_metrics(ranks, self.ks).items():
            metrics[name.replace("@", "_at_")].update(values)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)
        if self.sampled:
            self._log_metrics("val", self.sampled_metrics["val"], prefix="sampled_")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        ranks = self._eval_step(batch, self.test_metrics, "test")
        self._test_parts.append((batch["users"].detach(), ranks.detach()))

    def on_test_epoch_start(self) -> None:
        self._test_parts = []
        self._sampled_test_ranks = []

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)
        users = torch.cat([u for u, _ in self._test_parts]) if self._test_parts else torch.zeros(0, dtype=torch.long)
        ranks = torch.cat([r for _, r in self._test_parts]) if self._test_parts else torch.zeros(0, dtype=torch.long)
        if self.trainer.world_size > 1:
            users, ranks = self.all_gather(users).flatten(), self.all_gather(ranks).flatten()
        self.test_ranks = {"users": users.cpu(), "ranks": ranks.cpu()}
        if self.sampled:
            self._log_metrics("test", self.sampled_metrics["test"], prefix="sampled_")
            sampled = torch.cat(self._sampled_test_ranks) if self._sampled_test_ranks else torch.zeros(0, dtype=torch.long)
            if self.trainer.world_size > 1:
                sampled = self.all_gather(sampled).flatten()
            self.test_ranks["sampled_ranks"] = sampled.cpu()

    def _log_metrics(self, stage: str, metrics: nn.ModuleDict, prefix: str = "") -> None:
        for name in self.names:
            metric = metrics[name.replace("@", "_at_")]
            self.log(f"{stage}/{prefix}{name}", metric.compute(), prog_bar=name == "ndcg@10" and not prefix)
            metric.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
