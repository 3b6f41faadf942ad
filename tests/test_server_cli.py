"""``python -m deepm3.serve``'s options (deepm3.server.cli): the API key, and binding beyond loopback."""

from __future__ import annotations

import pytest

from tests.helpers.tiny_recommenders import KEY

pytest.importorskip("fastapi")


def serve_config(*overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tests.helpers.config import CONF_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose(config_name="serve", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def test_binding_another_address_without_a_key_is_refused_in_one_line(monkeypatch) -> None:
    from deepm3.errors import ConfigError
    from deepm3.server.cli import serve

    monkeypatch.delenv("DEEPM3_API_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        serve(serve_config("run=/no/such/run", "host=0.0.0.0"))
    assert str(info.value).startswith("host=0.0.0.0 is reachable from other machines") and "\n" not in str(info.value)


def test_the_key_is_read_from_the_environment_and_off_by_default(monkeypatch) -> None:
    monkeypatch.delenv("DEEPM3_API_KEY", raising=False)
    assert serve_config("run=x").api_key is None
    monkeypatch.setenv("DEEPM3_API_KEY", KEY)
    assert serve_config("run=x").api_key == KEY
