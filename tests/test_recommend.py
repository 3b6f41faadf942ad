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
