"""The time-rich datasets' sources read their published layouts (fixtures written in the exact formats)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepm3.data.preprocess import PreprocessConfig, build_sequences
from deepm3.data.samples import eval_samples
from deepm3.data.sources.jodie import JodieSource
from deepm3.data.sources.sessions import SessionFilesSource
from deepm3.errors import DataError
from tests.helpers.config import compose

EDITS = [(0, 8227, 0.0), (1, 8228, 36.0), (1, 8228, 77.0), (0, 8229, 131.5), (1, 8227, 200.0)]


def jodie_file(path: Path, features: int = 4) -> Path:
    """JODIE's own layout: a 5-name header, then 4 fields + `features` feature values per line."""
    lines = ["user_id,item_id,timestamp,state_label,comma_separated_list_of_features"]
    for user, item, time in EDITS:
        lines.append(",".join([str(user), str(item - 8227), str(time), "0", *(["0.1"] * features)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def benchmark_file(path: Path, index_column: bool = False) -> Path:
    """The temporal-graph benchmarks' layout: u,i,ts,label (optionally after an unnamed index column)."""
    header = ",u,i,ts,label" if index_column else "u,i,ts,label"
    rows = [f"{k}," if index_column else "" for k in range(len(EDITS))]
    lines = [header] + [f"{prefix}{u},{i},{int(t)},0" for prefix, (u, i, t) in zip(rows, EDITS)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jodie_layout_reads_user_item_and_floored_seconds(tmp_path):
    table = JodieSource(path=jodie_file(tmp_path / "wikipedia.csv")).read()
    assert table["user"].tolist() == ["0", "1", "1", "0", "1"]
    assert table["item"].tolist() == ["0", "1", "1", "2", "0"]
    assert table["timestamp"].tolist() == [0, 36, 77, 131, 200]


@pytest.mark.parametrize("index_column", [False, True])
def test_benchmark_layout_reads_the_same_table(tmp_path, index_column):
    table = JodieSource(path=benchmark_file(tmp_path / "w.csv", index_column)).read()
    assert table["user"].tolist() == ["0", "1", "1", "0", "1"]
    assert table["item"].tolist() == ["8227", "8228", "8228", "8229", "8227"]


def test_an_unknown_header_is_a_one_line_error(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="expected JODIE's 'user_id,item_id,timestamp"):
        JodieSource(path=path).read()


def test_a_partial_download_is_caught_by_the_row_count(tmp_path):
    with pytest.raises(DataError, match="5 interactions; expected 157,474"):
        JodieSource(path=jodie_file(tmp_path / "w.csv"), expected_rows=157474).read()


def test_a_bad_timestamp_names_the_line(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("u,i,ts,label\n0,1,5,0\n0,2,soon,0\n")
    with pytest.raises(DataError, match="line 3: field 'timestamp' = 'soon'"):
        JodieSource(path=path).read()


def test_without_a_path_the_file_is_fetched_into_the_raw_folder(tmp_path, monkeypatch):
    fetched = []

    def fake_ensure(dest, url, checksum):
        fetched.append(url)
        return jodie_file(Path(dest).parent.mkdir(parents=True, exist_ok=True) or Path(dest))

    monkeypatch.setattr("deepm3.data.sources.jodie.ensure_file", fake_ensure)
    table = JodieSource(name="wikipedia", raw_dir=tmp_path / "raw").read()
    assert fetched == ["http://snap.stanford.edu/jodie/wikipedia.csv"] and len(table) == 5


def session_files(folder: Path, shared: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.tsv").write_text(
        "SessionId\tItemId\tTime\n1\t214\t1396437466.94\n1\t215\t1396437500.318\n2\t214\t1396437600.5\n"
        "2\t216\t1396437700.0\n"
    )
    test_id = 1 if shared else 3
    (folder / "test.tsv").write_text(
        f"SessionId\tItemId\tTime\n{test_id}\t215\t1396860669.277\n{test_id}\t214\t1396860886.998\n"
    )
    return folder


def test_session_files_mark_the_test_files_events(tmp_path):
    table = SessionFilesSource(session_files(tmp_path / "y")).read()
    assert table["test"].tolist() == [False, False, False, False, True, True]
    assert table["timestamp"].tolist()[:2] == [1396437466, 1396437500]


def test_a_session_in_both_files_is_refused(tmp_path):
    with pytest.raises(DataError, match="session '1' is in both train.tsv and test.tsv"):
        SessionFilesSource(session_files(tmp_path / "y", shared=True)).read()


def test_a_missing_column_names_the_file(tmp_path):
    folder = session_files(tmp_path / "y")
    (folder / "test.tsv").write_text("SessionId\tItem\tTime\n3\t215\t1\n")
    with pytest.raises(DataError, match=r"test.tsv: missing column\(s\) \['ItemId'\]"):
        SessionFilesSource(folder).read()


def test_a_missing_folder_says_what_is_expected(tmp_path):
    with pytest.raises(DataError, match="expected the session files train.tsv and test.tsv"):
        SessionFilesSource(tmp_path / "nowhere").files()


def test_given_split_makes_each_test_click_after_the_first_a_target(tmp_path):
    table = SessionFilesSource(session_files(tmp_path / "y")).read()
    data = build_sequences(table, PreprocessConfig(user_core=0, item_core=0, split="given", val_share=0.25))
    test = eval_samples(data, "test", max_len=5)
    assert len(test) == 1 and str(data.user_ids[test.users[0]]) == "3"


@pytest.mark.parametrize(("name", "split"), [("wikipedia", "time"), ("yoochoose", "given")])
def test_the_dataset_configs_split_by_time(name, split):
    cfg = compose("train", [f"dataset={name}"])
    assert cfg.dataset.split == split and cfg.dataset.user_core == 0
