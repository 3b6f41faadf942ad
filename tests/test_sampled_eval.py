"""Sampled evaluation: 100 unseen negatives per user, drawn once, shared by all models.

The rules are docs/protocol.md, "Sampled mode".

Full ranking stays the headline: sampled mode adds ``sampled_*`` metrics beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from deepm3.data import negatives as negatives_module
from deepm3.data.negatives import load_or_sample_negatives, negatives_path, sample_negatives
from deepm3.errors import ConfigError
from deepm3.metrics import metric_names, sampled_target_ranks
from tests.helpers.spine_fixtures import processed
from tests.helpers.tiny_runs import tiny_config, tiny_run

# three users over 40 items; "heavy" has seen items 1..30 (10 left unseen), with a repeat
DATA = processed(
    {
        "heavy": [(i, 100 + i) for i in range(1, 31)] + [(5, 200)],
        "light": [(40, 1), (39, 2), (1, 3)],
        "mid": [(i, 10 * i) for i in range(10, 25)],
    }
)
SAMPLED = ["eval.mode=sampled", "eval.negatives=5"]


def user_items(user: int) -> set[int]:
    return set(DATA.items[DATA.offsets[user] : DATA.offsets[user + 1]].tolist())


def test_negatives_are_never_items_the_user_interacted_with():
    negatives = sample_negatives(DATA, count=10, seed=0)
    assert negatives.shape == (3, 10)
    for user in range(DATA.num_users):
        assert not set(negatives[user].tolist()) & user_items(user)


def test_negatives_are_distinct_real_items():
    negatives = sample_negatives(DATA, count=10, seed=1)
    assert negatives.min() >= 1 and negatives.max() <= DATA.num_items
    assert all(len(set(row.tolist())) == 10 for row in negatives)


def test_a_user_with_exactly_enough_unseen_items_gets_all_of_them():
    heavy = DATA.user_ids.tolist().index("heavy")
    assert sorted(sample_negatives(DATA, count=10, seed=2)[heavy].tolist()) == list(range(31, 41))


def test_the_draw_depends_only_on_the_seed():
    np.testing.assert_array_equal(sample_negatives(DATA, 8, seed=3), sample_negatives(DATA, 8, seed=3))
    assert not np.array_equal(sample_negatives(DATA, 8, seed=3), sample_negatives(DATA, 8, seed=4))


def test_negatives_are_uniform_over_unseen_items():
    light = DATA.user_ids.tolist().index("light")
    draws = np.concatenate([sample_negatives(DATA, 5, seed)[light] for seed in range(400)])
    counts = np.bincount(draws, minlength=DATA.num_items + 1)[1:]
    unseen = sorted(set(range(1, DATA.num_items + 1)) - user_items(light))
    assert counts[[i - 1 for i in sorted(user_items(light))]].sum() == 0
    expected = len(draws) / len(unseen)  # 2000 draws over 37 items: ~54 each
    assert np.abs(counts[[i - 1 for i in unseen]] - expected).max() < 0.5 * expected


def test_too_few_unseen_items_is_a_config_error_naming_the_user():
    with pytest.raises(ConfigError, match=r"eval.negatives=11.*'heavy'.*leaving 10"):
        sample_negatives(DATA, count=11, seed=0, dataset="toy")


def test_negatives_are_stored_with_the_processed_data_and_reused(tmp_path, monkeypatch):
    first = load_or_sample_negatives(DATA, tmp_path, count=6, seed=7)
    assert negatives_path(tmp_path, 6, 7).is_file()
    np.testing.assert_array_equal(np.load(negatives_path(tmp_path, 6, 7)), first)

    def no_new_draws(*args, **kwargs):
        raise AssertionError("negatives must be read from disk, not drawn again")

    monkeypatch.setattr(negatives_module, "sample_negatives", no_new_draws)
    np.testing.assert_array_equal(load_or_sample_negatives(DATA, tmp_path, count=6, seed=7), first)


def test_sampled_rank_counts_negatives_scoring_at_least_the_target():
    scores = torch.tensor([[0.0, 0.5, 0.9, 0.5, 0.1, float("nan")], [0.0, float("nan"), 0.9, 0.5, 0.1, 0.2]])
    negatives = torch.tensor([[2, 3, 4, 5], [2, 3, 4, 5]])
    # row 0: target 1 (0.5) ties 3, loses to 2, and a NaN negative counts against it -> 3. row 1: NaN target -> last
    assert sampled_target_ranks(scores, torch.tensor([1, 1]), negatives).tolist() == [3, 4]


def test_a_constant_model_ranks_every_target_last_among_the_negatives():
    scores = torch.ones(3, 11)
    negatives = torch.tensor([[2, 3, 4]] * 3)
    assert sampled_target_ranks(scores, torch.tensor([1, 5, 6]), negatives).tolist() == [3, 3, 3]


@pytest.fixture(scope="module")
def sampled_runs(tmp_path_factory) -> dict[str, Path]:
    """Two different models evaluated in sampled mode on the same tiny data."""
    root = tmp_path_factory.mktemp("sampled")
    outs = {}
    for model in ("sasrec", "gru4rec"):
        outs[model] = root / model
        tiny_run(outs[model], root / "data", f"model={model}", *SAMPLED, items=40)
    return outs


def data_dir_of(out: Path) -> Path:
    return Path(json.loads((out / "metrics.json").read_text())["data"]["data_dir"])


def test_sampled_metrics_are_labelled_and_logged_beside_full_ranking(sampled_runs):
    for out in sampled_runs.values():
        test = json.loads((out / "metrics.json").read_text())["test"]
        assert sorted(test) == sorted(metric_names() + [f"sampled_{name}" for name in metric_names()])
        log = pd.read_csv(out / "logs" / "metrics.csv")
        assert {"val/ndcg@10", "val/sampled_ndcg@10"} <= set(log.columns)


def test_every_model_ranks_against_the_one_stored_draw(sampled_runs):
    folders = {data_dir_of(out) for out in sampled_runs.values()}
    assert len(folders) == 1
    folder = folders.pop()
    assert [p.name for p in folder.glob("negatives-*.npy")] == ["negatives-5-seed0.npy"]


def test_sampled_rank_never_exceeds_the_full_rank(sampled_runs):
    for out in sampled_runs.values():
        rows = pd.read_csv(out / "test_users.csv")
        assert {"sampled_rank", "sampled_ndcg@10"} <= set(rows.columns)
        assert (rows["sampled_rank"] <= rows["rank"]).all()
        assert rows["sampled_rank"].between(0, 5).all()


def test_eval_batches_carry_each_users_stored_negatives(sampled_runs, tmp_path):
    cfg = tiny_config(tmp_path, sampled_runs["sasrec"].parent / "data", *SAMPLED, items=40)
    datamodule = instantiate(cfg.dataset, eval_mode="sampled", negatives=5, negatives_seed=0, _convert_="all")
    stored = np.load(negatives_path(data_dir_of(sampled_runs["sasrec"]), 5, 0))
    batch = next(iter(datamodule.test_dataloader()))
    np.testing.assert_array_equal(batch["negatives"].numpy(), stored[batch["users"].numpy()])
    assert "negatives" not in next(iter(datamodule.train_dataloader()))


def test_full_mode_batches_carry_no_negatives(tmp_path):
    cfg = tiny_config(tmp_path, tmp_path / "data")
    datamodule = instantiate(cfg.dataset, _convert_="all")
    assert "negatives" not in next(iter(datamodule.val_dataloader()))
    assert not list(Path(datamodule.describe()["data_dir"]).glob("negatives-*"))


def test_too_small_a_dataset_for_100_negatives_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="eval.negatives=100: dataset tiny has"):
        tiny_run(tmp_path / "run", tmp_path / "data", "eval.mode=sampled")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_eval_mode_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="eval.mode='sample'"):
        tiny_run(tmp_path / "run", tmp_path / "data", "eval.mode=sample")
