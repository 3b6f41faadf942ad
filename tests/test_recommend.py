"""``python -m deepm3.recommend``: its options are checked before any work, and it never writes over its input."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepm3.errors import ConfigError
from tests.helpers.config import CONF_DIR
from tests.helpers.user_errors import one_line


def recommend_config(*overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose(config_name="recommend", overrides=["progress=false", *overrides])
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("link", [False, True], ids=["same-path", "symlink"])
def test_recommend_refuses_to_write_over_its_input(tmp_path: Path, link: bool) -> None:
    from deepm3.recommend import run as recommend

    source = tmp_path / "x.csv"
    source.write_text("user,item,timestamp\nu1,sku-003,100\n")
    output = source
    if link:
        output = tmp_path / "y.csv"
        output.symlink_to(source)
    with pytest.raises(ConfigError, match=r"output=.*is the input file") as info:
        recommend(recommend_config(f"run={tmp_path / 'no-run'}", f"input={source}", f"output={output}"))
    one_line(info.value)
    assert source.read_text() == "user,item,timestamp\nu1,sku-003,100\n"


def test_recommend_refuses_a_non_boolean_exclude_seen(tmp_path: Path) -> None:
    from deepm3.recommend import run as recommend

    (tmp_path / "h.csv").write_text("user,item,timestamp\nu1,sku-003,100\n")
    with pytest.raises(ConfigError, match=r"exclude_seen='maybe'; expected true or false") as info:
        recommend(
            recommend_config(
                f"run={tmp_path}", f"input={tmp_path / 'h.csv'}", f"output={tmp_path / 'o.csv'}", "exclude_seen=maybe"
            )
        )
    one_line(info.value)
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("run_arg", ["run", "run/checkpoints/best.ckpt"])
@pytest.mark.parametrize("output", ["run/item_map.csv", "run/checkpoints/recs.jsonl", "run/new/recs.csv"])
def test_recommend_refuses_to_write_into_the_run_folder(tmp_path: Path, run_arg: str, output: str) -> None:
    from deepm3.errors import ConfigError
    from deepm3.recommend import run as recommend

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    (tmp_path / "run" / "item_map.csv").write_text("item\nsku-003\n")
    source = tmp_path / "in.csv"
    source.write_text("user,item,timestamp\nu1,sku-003,100\n")
    config = recommend_config(f"run={tmp_path / run_arg}", f"input={source}", f"output={tmp_path / output}")
    with pytest.raises(ConfigError, match=r"output=.* is inside the run dir .*choose a path outside it") as info:
        recommend(config)
    assert "\n" not in str(info.value)
    assert (tmp_path / "run" / "item_map.csv").read_text() == "item\nsku-003\n"


@pytest.mark.parametrize(
    "name, text",
    [
        ("in.csv", "user,item,timestamp,rating\nu1,i01,1,5\nu1,i02,2,4\nu2,i03,3,1\n"),
        (
            "in.jsonl",
            '{"user": "u1", "items": ["i01"], "timestamps": [1], "rating": 5}\n' * 1
            + '{"user": "u2", "items": ["i02"], "timestamps": [2], "rating": 4}\n',
        ),
    ],
)
def test_an_input_field_nothing_reads_is_named_once(tmp_path: Path, caplog, name: str, text: str) -> None:
    from deepm3.recommend import READERS

    path = tmp_path / name
    path.write_text(text)
    with caplog.at_level("WARNING", logger="deepm3.recommend"):
        READERS[path.suffix](path)
    warnings_ = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(warnings_) == 1 and "['rating']" in warnings_[0]
