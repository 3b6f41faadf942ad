"""Every ``dataset=`` config composes to the values it had before the shared keys moved into
``conf/dataset/base.yaml`` (recorded from the per-dataset files), in the same key order."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.helpers.config import compose

SHARED = {
    "_target_": "deepm3.data.datamodule.SequenceDataModule",
    "cache_dir": "${paths.data_dir}/processed",
    "max_len": 50,
    "user_core": 5,
    "item_core": 5,
    "min_rating": None,
    "split": "loo",
    "val_share": 0.15,
    "test_share": 0.15,
    "train_windows": "all",
    "train_stride": 1,
    "batch_size": 128,
    "eval_batch_size": 256,
    "num_workers": 0,
}
# dataset -> (its source class, the shared keys it sets to other values)
DATASETS = {
    "ml100k": ("deepm3.data.sources.ml100k.ML100kSource", {}),
    "ml1m": ("deepm3.data.sources.ml1m.ML1MSource", {"max_len": 200, "eval_batch_size": 1024}),
    "amazon_books": ("deepm3.data.sources.amazon.AmazonSource", {}),
    "amazon_toys": ("deepm3.data.sources.interactions.InteractionsFileSource", {"user_core": 3, "item_core": 0}),
    "interactions": ("deepm3.data.sources.interactions.InteractionsFileSource", {}),
    "synthetic": ("deepm3.data.sources.synthetic.SyntheticSource", {}),
    "wikipedia": (
        "deepm3.data.sources.jodie.JodieSource",
        {"split": "time", "user_core": 0, "item_core": 0},
    ),
    "yoochoose": (
        "deepm3.data.sources.sessions.SessionFilesSource",
        {"split": "given", "user_core": 0, "item_core": 0, "max_len": 20},
    ),
}
ORDER = [
    "_target_",
    "name",
    "source",
    "cache_dir",
    "max_len",
    "user_core",
    "item_core",
    "min_rating",
    "split",
    "val_share",
    "test_share",
    "train_windows",
    "train_stride",
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "facts",
]
# dataset -> its facts for the claims page (readable name, kind, the original work's dataset)
FACTS = {
    "ml1m": {"readable": "ML-1M", "kind": "dense", "original": True},
    "ml100k": {"readable": "ML-100k", "kind": "dense", "original": False},
    "amazon_books": {"readable": "Amazon Books", "kind": "sparse", "original": True},
    "amazon_toys": {"readable": "Amazon Toys & Games", "kind": "sparse", "original": False},
}
NO_FACTS = {"readable": None, "kind": None, "original": False}


@pytest.mark.parametrize("root", ["train", "phase2"])
@pytest.mark.parametrize("name", list(DATASETS))
def test_dataset_composes_to_its_recorded_values(root: str, name: str) -> None:
    dataset = compose(root, [f"dataset={name}"]).dataset
    values = OmegaConf.to_container(dataset, resolve=False)
    source, changed = DATASETS[name]
    assert list(values) == ORDER
    assert values.pop("name") == name and values.pop("source")["_target_"] == source
    assert values.pop("facts") == FACTS.get(name, NO_FACTS)
    assert values == {**SHARED, **changed}


def test_an_experiment_still_overrides_the_shared_keys() -> None:
    dataset = compose("train", ["experiment=peer_ml100k"]).dataset
    assert (dataset.name, dataset.user_core, dataset.item_core, dataset.max_len) == ("ml100k", 0, 0, 50)


def test_base_is_not_a_dataset() -> None:
    """``dataset=base`` has no name or source: reading them says so instead of building nothing."""
    dataset = compose("train", ["dataset=base"]).dataset
    assert OmegaConf.is_missing(dataset, "name") and OmegaConf.is_missing(dataset, "source")
