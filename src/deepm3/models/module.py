"""The one LightningModule: trains any ``SequentialRecommender`` and evaluates it the same way."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MetricCollection
from torchmetrics.utilities.distributed import gather_all_tensors

from deepm3.errors import ConfigError
from deepm3.metrics import (
    DEFAULT_KS,
    EVAL_MODES,
    RankMetrics,
    metric_names,
    repeat_targets,
    sampled_target_ranks,
    target_ranks,
    unique_by_sample,
)
from deepm3.models.components.base import SequentialRecommender
from deepm3.models.components.time import DEFAULT_QUERY, check_query_mode, visible_inputs, with_query

DEFAULT_OPTIMIZER = "torch.optim.AdamW"
OWN_OPTIM_KEYS = ("lr", "weight_decay", "loss")  # RecModule's own arguments; the rest of cfg.optim builds the optimizer


def optimizer_arguments(optim: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`RecModule`'s arguments from a plain ``cfg.optim``: ``lr``, ``weight_decay`` and ``loss``,
    and ``optimizer``, the rest (the class and its other keyword arguments), which
    :meth:`RecModule.configure_optimizers` builds with ``lr`` and ``weight_decay`` again. A run
    config saved before the optimizer was configurable names none and gets AdamW."""
    spec = dict(optim)
    own = {key: spec.pop(key, None) for key in OWN_OPTIM_KEYS}
    spec.pop("_partial_", None)
    return {**own, "optimizer": {"_target_": DEFAULT_OPTIMIZER, **spec}}


# Under DDP the evaluation metrics are gathered through their torchmetrics state and counted once per
# sample (RecModule), so Lightning's advice to sync logged values or to test on one device does not apply.
warnings.filterwarnings("ignore", message=r".*sync_dist=True.* when logging on epoch level in distributed")
warnings.filterwarnings("ignore", message=r"Using `DistributedSampler` with the dataloaders\. During `trainer\.test")


class RecModule(L.LightningModule):
    """Wraps a network built from a plain-dict Hydra config (so checkpoints load with
    ``weights_only=True``): next-item training, full-ranking validation and test.

    Every evaluation sample is ranked over all items unless ``exclude_history``; then its
    history is removed from the candidates, except for samples whose target is itself a
    history item (a *repeat*): those are ranked over all items and reported as the
    ``repeat/`` slice, outside the headline number (see :class:`deepm3.metrics.RankMetrics`).
    Test ranks are kept per sample (``test_ranks``, in sample order) so callers can write per-user rows.
    Under DDP every metric and row is gathered over the processes and counted once per sample
    (``batch["samples"]``), so the padding of Lightning's distributed sampler never counts twice.
    ``eval_mode="sampled"`` also ranks each target among the batch's stored ``negatives`` and
    logs those metrics as ``<stage>/sampled_<metric>`` beside the full-ranking ones, which stay
    the monitored headline.

    ``query`` (``time.query``) decides what every network sees of the moment a prediction is
    asked for (:func:`deepm3.models.components.time.visible_inputs`), in training and
    evaluation alike: under ``last`` no network can see the predicted event's timestamp. It is
    also the only road by which a time-aware network learns the mode (:func:`with_query`).

    ``optimizer`` is a plain-dict Hydra config of the optimizer class and its arguments other
    than ``lr`` and ``weight_decay`` (``{"_target_": "torch.optim.Adam"}``); ``None`` is AdamW,
    as checkpoints written before it was configurable were trained with.
    """

    def __init__(
        self,
        net: dict[str, Any],
        num_items: int,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        loss: str = "ce",
        exclude_history: bool = False,
        ks: tuple[int, ...] | list[int] = DEFAULT_KS,
        monitor: str = "val/ndcg@10",
        eval_mode: str = "full",
        query: str = DEFAULT_QUERY,
        optimizer: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_query_mode(query)
        self.save_hyperparameters()
        self.net: SequentialRecommender = instantiate(with_query(net, query), num_items=num_items, _convert_="all")
        self.ks = tuple(ks)
        if eval_mode not in EVAL_MODES:
            raise ConfigError(f"eval.mode={eval_mode!r}; expected one of {list(EVAL_MODES)}")
        self.sampled = eval_mode == "sampled"
        stages = {}
        for stage in ("val", "test"):
            stages[stage] = RankMetrics(self.ks, headline_novel_only=exclude_history)
            stages[f"{stage}_sampled"] = RankMetrics(self.ks)
        self.rank_metrics = MetricCollection(stages, compute_groups=False)
        self.test_ranks: dict[str, torch.Tensor] = {}
        self._test_users: list[torch.Tensor] = []
        self._test_samples: list[torch.Tensor] = []  # row of each test sample in the split's arrays

    @classmethod
    def from_config(cls, cfg: DictConfig, num_items: int) -> RecModule:
        """The module a training config describes: the one place its ``model.net``, ``optim``,
        ``eval``, ``monitor`` and ``time.query`` become the module's hyper-parameters.

        Plain containers, not ``DictConfig``: checkpoints must load with ``weights_only=True``.
        """
        optim = OmegaConf.to_container(cfg.optim, resolve=True)
        assert isinstance(optim, dict)
        return cls(
            net=OmegaConf.to_container(cfg.model.net, resolve=True),
            num_items=num_items,
            **optimizer_arguments(optim),
            exclude_history=cfg.eval.exclude_history,
            ks=list(cfg.eval.ks),
            monitor=cfg.monitor,
            eval_mode=cfg.eval.get("mode", "full"),
            query=cfg.time.get("query", DEFAULT_QUERY),
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net.predict(visible_inputs(batch, self.hparams.query))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.net.training_loss(visible_inputs(batch, self.hparams.query), self.hparams.loss)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch["items"]))
        return loss

    def ranks(self, batch: dict[str, torch.Tensor], scores: torch.Tensor | None = None) -> torch.Tensor:
        """Pessimistic full-ranking rank of each sample's target (``docs/protocol.md``, "Ranking").

        With ``exclude_history`` the history is removed from a sample's candidates only when
        its target is not a history item; a repeat target is ranked over every item.
        """
        scores = self(batch) if scores is None else scores
        targets = batch["targets"][:, -1]
        if not self.hparams.exclude_history:
            return target_ranks(scores, targets)
        rows, items = batch["history_rows"], batch["history_items"]
        novel = ~repeat_targets(targets, rows, items)
        keep = novel[rows.to(novel.device)]
        return target_ranks(scores, targets, rows[keep.to(rows.device)], items[keep.to(items.device)])

    def _ranked(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(scores, ranks, repeat)`` of an evaluation batch: its scores, each target's rank
        (:meth:`ranks`) and whether it repeats a history item (``None`` without a history)."""
        scores = self(batch)
        targets = batch["targets"][:, -1]
        ranks = self.ranks(batch, scores)
        repeat = (
            repeat_targets(targets, batch["history_rows"], batch["history_items"]) if "history_rows" in batch else None
        )
        return scores, ranks, repeat

    @torch.no_grad()
    def headline_metrics(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        """The test stage's headline metrics on ``batches``, outside a ``Trainer``: the same ranks
        (:meth:`ranks`) and :class:`~deepm3.metrics.RankMetrics` as :meth:`test_step`, so clean
        batches of the test split reproduce its numbers. Ranks are kept on the CPU, as the per-user
        rows are; ``batches`` are on the module's device."""
        metric = RankMetrics(self.ks, headline_novel_only=bool(self.hparams.exclude_history))
        updated = False
        for batch in batches:
            _, ranks, repeat = self._ranked(batch)
            metric.update(ranks.cpu(), None if repeat is None else repeat.cpu())
            updated = True
        if not updated:
            return {name: float("nan") for name in metric_names(self.ks)}
        computed = metric.compute()
        return {name: float(computed[name]) for name in metric_names(self.ks)}

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        scores, ranks, repeat = self._ranked(batch)
        targets = batch["targets"][:, -1]
        samples = batch.get("samples")
        self.rank_metrics[stage].update(ranks, repeat, samples)
        if self.sampled:
            self.rank_metrics[f"{stage}_sampled"].update(
                sampled_target_ranks(scores, targets, batch["negatives"]), repeat, samples
            )
        return ranks

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")
        self._test_users.append(batch["users"].detach())
        if "samples" in batch:
            self._test_samples.append(batch["samples"].detach())
        else:  # a hand-built batch: its rows follow the ones before it
            done = sum(len(x) for x in self._test_samples)
            self._test_samples.append(torch.arange(done, done + len(batch["users"]), device=batch["users"].device))

    def on_test_epoch_start(self) -> None:
        self._test_users = []
        self._test_samples = []

    def on_test_epoch_end(self) -> None:
        metric = self.rank_metrics["test"]
        rows = {
            "users": torch.cat(self._test_users) if self._test_users else torch.zeros(0, dtype=torch.long),
            "samples": torch.cat(self._test_samples) if self._test_samples else torch.zeros(0, dtype=torch.long),
            "ranks": torch.cat(metric.ranks) if metric.ranks else torch.zeros(0, dtype=torch.long),
            "repeat": torch.cat(metric.repeat) if metric.repeat else torch.zeros(0, dtype=torch.bool),
        }
        if self.sampled:
            sampled = self.rank_metrics["test_sampled"].ranks
            rows["sampled_ranks"] = torch.cat(sampled) if sampled else torch.zeros(0, dtype=torch.long)
        self.test_ranks = {k: v.cpu() for k, v in self._gathered_once_per_sample(rows).items()}
        self._log_metrics("test")

    def _gathered_once_per_sample(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This process's per-sample columns; under DDP every process's, one row per sample, in sample order.

        ``gather_all_tensors`` (not ``self.all_gather``) because the processes may hold unequal numbers.
        """
        if self.trainer.world_size > 1:
            rows = {k: torch.cat(gather_all_tensors(v.to(self.device))) for k, v in rows.items()}
        names = [k for k in rows if k != "samples"]
        samples, *columns = unique_by_sample(rows["samples"], *(rows[k] for k in names))
        return {"samples": samples, **dict(zip(names, columns))}

    def _log_metrics(self, stage: str) -> None:
        names = [(stage, "")] + ([(f"{stage}_sampled", "sampled_")] if self.sampled else [])
        for key, prefix in names:
            metric = self.rank_metrics[key]
            for name, value in metric.compute().items():
                if prefix and (name.startswith(("novel/", "repeat")) or name.endswith("users")):
                    continue  # the sampled table carries the headline numbers only
                self.log(
                    f"{stage}/{prefix}{name}",
                    value.to(self.device),
                    prog_bar=name == "ndcg@10" and not prefix,
                    sync_dist=False,
                )
            metric.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        spec = {"_target_": DEFAULT_OPTIMIZER, **(self.hparams.optimizer or {}), "_partial_": True}
        return instantiate(spec)(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
