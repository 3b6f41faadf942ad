"""MovieLens-100k offline: the recbole copy, a hand-placed u.data, and clear errors otherwise."""

from __future__ import annotations

import hashlib
import shutil
import sys

import pytest

from deepm3.data.sources import ml100k
from deepm3.data.sources.ml100k import RECBOLE_SHA256, ML100kSource, recbole_copy
from deepm3.errors import DataError

needs_recbole = pytest.mark.skipif(
    recbole_copy() is None, reason="recbole==1.2.1 is not installed (pip install --no-deps recbole==1.2.1)"
)


def write_u_data(raw_dir, lines: list[str]):
    path = raw_dir / "ml-100k" / "u.data"
    path.parent.mkdir(parents=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def no_recbole(monkeypatch):
    monkeypatch.setattr(ml100k, "recbole_copy", lambda: None)


@needs_recbole
def test_recbole_copy_is_found_without_importing_recbole(monkeypatch):
    for name in [m for m in sys.modules if m == "recbole" or m.startswith("recbole.")]:
        monkeypatch.delitem(sys.modules, name)
    path = recbole_copy()
    assert path is not None and path.name == "ml-100k.inter"
    assert "recbole" not in sys.modules


@needs_recbole
def test_recbole_copy_matches_the_pinned_sha256():
    assert hashlib.sha256(recbole_copy().read_bytes()).hexdigest() == RECBOLE_SHA256


@needs_recbole
def test_recbole_copy_reads_as_all_100k_ratings(tmp_path):
    source = ML100kSource(tmp_path, download=False)
    table = source.read()
    assert source.files() == [recbole_copy()]
    assert len(table) == 100_000
    assert table["user"].nunique() == 943
    assert table["item"].nunique() == 1682
    assert table["timestamp"].dtype == "int64"
    assert set(table["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_tampered_recbole_copy_is_rejected(tmp_path, monkeypatch):
    fake = tmp_path / "ml-100k.inter"
    fake.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t4\n")
    monkeypatch.setattr(ml100k, "recbole_copy", lambda: fake)
    with pytest.raises(DataError, match="sha256"):
        ML100kSource(tmp_path / "raw", download=False).files()


def test_hand_placed_u_data_is_read_in_file_order(tmp_path):
    path = write_u_data(tmp_path, ["196\t242\t3\t881250949", "186\t302\t3\t891717742", "22\t377\t1\t878887116"])
    source = ML100kSource(tmp_path, download=False)
    assert source.files() == [path]
    table = source.read()
    assert table["user"].tolist() == ["196", "186", "22"]
    assert table["item"].tolist() == ["242", "302", "377"]
    assert table["timestamp"].tolist() == [881250949, 891717742, 878887116]
    assert table["rating"].tolist() == [3.0, 3.0, 1.0]


def test_neither_copy_available_is_one_line_saying_what_to_do(tmp_path, no_recbole):
    with pytest.raises(DataError) as info:
        ML100kSource(tmp_path, download=False).files()
    message = str(info.value)
    assert "\n" not in message
    assert "pip install --no-deps recbole==1.2.1" in message
    assert str(tmp_path / "ml-100k" / "u.data") in message


def test_recbole_disabled_without_download_is_the_same_clear_error(tmp_path):
    with pytest.raises(DataError, match="recbole==1.2.1"):
        ML100kSource(tmp_path, download=False, use_recbole=False).files()


@pytest.mark.parametrize(
    "bad_line, field",
    [
        ("186\t302\t3", "fields"),
        ("186\t302\t3\t891717742\t9", "fields"),
        ("186\t302\t3\tlater", "timestamp"),
        ("186\t302\tgood\t891717742", "rating"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, field):
    path = write_u_data(tmp_path, ["196\t242\t3\t881250949", "22\t377\t1\t878887116", bad_line, "1\t1\t1\t1"])
    with pytest.raises(DataError) as info:
        ML100kSource(tmp_path, download=False).read()
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message
    assert field in message
    assert "\n" not in message


@needs_recbole
def test_hand_placed_u_data_wins_over_the_recbole_copy(tmp_path):
    path = write_u_data(tmp_path, ["1\t1\t5\t10", "1\t2\t4\t11", "2\t1\t3\t12"])
    assert ML100kSource(tmp_path, download=False).files() == [path]
    shutil.rmtree(path.parent)
    assert ML100kSource(tmp_path, download=False).files() == [recbole_copy()]
