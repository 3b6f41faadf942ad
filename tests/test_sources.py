"""ML-1M, Amazon (2014 / 2018 / 2023) and user interaction files, read from their exact raw formats.

Each source must give back every row with the right user, item and time (seconds), keep file
order for tied timestamps, and turn every kind of bad input into one clear line naming the
file, the line or field, and what was expected -- leaving nothing half-built in the cache.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from deepm3.data.cache import load_or_build
from deepm3.data.preprocess import PreprocessConfig, build_sequences, choose_users
from deepm3.data.processed import ProcessedData
from deepm3.data.schema import validate_interactions
from deepm3.data.sources.amazon import AmazonSource
from deepm3.data.sources.base import InteractionSource
from deepm3.data.sources.fields import to_unix_seconds
from deepm3.data.sources.interactions import InteractionsFileSource
from deepm3.data.sources.ml1m import ML1MSource
from deepm3.data.sources.synthetic import SyntheticSource
from deepm3.errors import ConfigError, DataError, user_error
from tests.helpers.config import CONF_DIR
from tests.helpers.fixtures_raw import (
    amazon_json_lines,
    expected_sequences,
    interaction_rows,
    write_amazon_2023,
    write_amazon_json,
    write_csv,
    write_ml1m,
    write_recbole_inter,
)
from tests.helpers.user_errors import one_line

NO_CORE = PreprocessConfig(user_core=0, item_core=0)
ROWS = interaction_rows(users=40, items=30, seed=0)
DAY_ROWS = interaction_rows(users=60, items=40, seed=1, day_resolution=True, user_prefix="A", item_prefix="B00")
NUMERIC_ROWS = interaction_rows(users=25, items=20, seed=2, user_prefix="", item_prefix="")


def sequences(data: ProcessedData) -> dict[str, list[tuple[str, int]]]:
    """``{user: [(raw item, seconds), ...]}`` read back through the saved id mappings."""
    out = {}
    for u, user in enumerate(data.user_ids):
        span = slice(data.offsets[u], data.offsets[u + 1])
        out[str(user)] = [(str(data.item_ids[i - 1]), int(t)) for i, t in zip(data.items[span], data.times[span])]
    return out


def assert_reads_exactly(source: InteractionSource, rows: list, ms: bool = False) -> None:
    table = source.read()
    assert len(table) == len(rows)
    assert sequences(build_sequences(table, NO_CORE)) == expected_sequences(rows, ms=ms)


def amazon(tmp_path: Path, fmt: str = "2014", **options) -> AmazonSource:
    options.setdefault("max_users", None)
    return AmazonSource(tmp_path, format=fmt, download=False, **options)


@pytest.mark.parametrize("rows", [ROWS, DAY_ROWS, NUMERIC_ROWS])
def test_fixtures_hold_ties_whose_file_order_is_not_item_id_order(rows):
    # otherwise the exact-sequence checks below could not tell file order from id order
    by_user: dict[str, list] = {}
    for user, item, _, t in rows:
        by_user.setdefault(user, []).append((t, item))
    tied = [[item for t2, item in events if t2 == t] for events in by_user.values() for t in {t for t, _ in events}]
    assert any(group != sorted(group) for group in tied if len(group) > 1)


# --- MovieLens-1M -------------------------------------------------------------------------------


def test_ml1m_reads_every_rating_with_ties_in_file_order(tmp_path):
    write_ml1m(tmp_path, NUMERIC_ROWS)
    assert_reads_exactly(ML1MSource(tmp_path, download=False), NUMERIC_ROWS)
    assert ML1MSource(tmp_path, download=False).read()["rating"].tolist() == [r for _, _, r, _ in NUMERIC_ROWS]


def test_ml1m_latin1_files_sit_beside_ratings(tmp_path):
    ratings = write_ml1m(tmp_path, NUMERIC_ROWS)
    assert "Misérables" in (ratings.parent / "movies.dat").read_text(encoding="latin-1")
    with pytest.raises(UnicodeDecodeError):
        (ratings.parent / "movies.dat").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "line, message",
    [
        ("7::3::5::978300760::9", r"ratings\.dat: .*line 3.*expected 4 fields"),
        ("7::3::5", r"ratings\.dat: line 3: fewer than 4 fields"),
        (
            "7::3::5::97830076O",
            r"ratings\.dat: line 3: field 'timestamp' = '97830076O'; expected a non-negative integer",
        ),
        ("7::3::5::-5", r"ratings\.dat: line 3: field 'timestamp' = '-5'"),
        ("7::3::5::978300760.5", r"line 3: field 'timestamp' = '978300760.5'"),
        ("7::3::five::978300760", r"line 3: field 'rating' = 'five'; expected a number"),
    ],
)
def test_ml1m_malformed_lines_are_named(tmp_path, line, message):
    ratings = write_ml1m(tmp_path, NUMERIC_ROWS[:4])
    lines = ratings.read_text(encoding="latin-1").splitlines()
    lines[2] = line
    ratings.write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(DataError, match=message) as info:
        ML1MSource(tmp_path, download=False).read()
    assert "\n" not in str(info.value)


# --- Amazon 2014 / 2018 / 2023 -----------------------------------------------------------------


@pytest.mark.parametrize("fmt, filename", [("2014", "reviews_Books_5.json.gz"), ("2018", "Books_5.json.gz")])
def test_amazon_json_lines_parse_every_review(tmp_path, fmt, filename):
    write_amazon_json(tmp_path / filename, DAY_ROWS, fmt)
    source = amazon(tmp_path, fmt)
    assert source.files() == [tmp_path / filename]
    assert_reads_exactly(source, DAY_ROWS)
    assert source.read()["rating"].tolist() == [r for _, _, r, _ in DAY_ROWS]


def test_amazon_2023_csv_milliseconds_become_the_same_seconds(tmp_path):
    write_amazon_json(tmp_path / "reviews_Books_5.json.gz", DAY_ROWS, "2014")
    write_amazon_2023(tmp_path / "Books.csv.gz", DAY_ROWS, extra_ms=999)
    in_seconds, in_ms = amazon(tmp_path, "2014").read(), amazon(tmp_path, 2023).read()
    assert in_ms["timestamp"].tolist() == [t for *_, t in DAY_ROWS]
    pd.testing.assert_frame_equal(in_seconds, in_ms)


def test_amazon_2023_uncompressed_copy_by_file_name(tmp_path):
    write_amazon_2023(tmp_path / "Books.csv", DAY_ROWS, compress=False)
    assert_reads_exactly(amazon(tmp_path, "2023", filename="Books.csv"), DAY_ROWS)


def test_amazon_json_is_parsed_line_by_line_not_pattern_matched(tmp_path):
    # the review text holds '"asin": "0000000000", "overall": 1.0'; only real JSON keys may count
    write_amazon_json(tmp_path / "reviews_Books_5.json.gz", DAY_ROWS[:20])
    table = amazon(tmp_path).read()
    assert "0000000000" not in set(table["item"]) and set(table["rating"]) != {1.0}


def test_user_subsample_is_seeded_and_independent_of_file_order(tmp_path):
    write_amazon_json(tmp_path / "reviews_Books_5.json.gz", DAY_ROWS)
    shuffled = DAY_ROWS[:]
    random.Random(5).shuffle(shuffled)
    write_amazon_json(tmp_path / "other" / "reviews_Books_5.json.gz", shuffled)
    users = lambda folder, seed: set(AmazonSource(folder, max_users=15, seed=seed, download=False).read()["user"])  # noqa: E731
    first = users(tmp_path, 0)
    assert len(first) == 15
    assert users(tmp_path, 0) == first == users(tmp_path / "other", 0)
    assert users(tmp_path, 1) != first


def test_subsample_keeps_every_row_of_the_chosen_users_in_file_order(tmp_path):
    write_amazon_json(tmp_path / "reviews_Books_5.json.gz", DAY_ROWS)
    table = AmazonSource(tmp_path, max_users=10, seed=0, download=False).read()
    chosen = set(table["user"])
    kept = [(u, i, t) for u, i, _, t in DAY_ROWS if u in chosen]
    assert list(zip(table["user"], table["item"], table["timestamp"])) == kept


def test_k_core_reaches_its_fixpoint_after_subsampling(tmp_path):
    write_amazon_json(tmp_path / "reviews_Books_5.json.gz", DAY_ROWS)
    sample = AmazonSource(tmp_path, max_users=30, seed=0, download=False).read()
    data = build_sequences(sample, PreprocessConfig(user_core=3, item_core=3))
    assert data.stats["raw_interactions"] == len(sample) < len(DAY_ROWS)
    assert data.stats["k_core_passes"] >= 2
    assert data.lengths().min() >= 3
    assert np.bincount(data.items)[1:].min() >= 3
    assert set(data.user_ids) <= set(sample["user"])


def test_choose_users_keeps_everyone_when_the_sample_is_not_smaller():
    ids = np.array(["b", "a", "c"])
    assert choose_users(ids, None, 0).all() and choose_users(ids, 3, 0).all()
    assert choose_users(ids, 2, 0).sum() == 2


def bad_json_line(tmp_path: Path, line: str, replace: int = 2) -> AmazonSource:
    lines = amazon_json_lines(DAY_ROWS[:6], "2014")
    lines[replace] = line
    write_amazon_json(tmp_path / "reviews_Books_5.json.gz", [], lines=lines)
    return amazon(tmp_path)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"reviewerID": "A1", "asin": "B1", "overall": 5.0, ', r"line 3: not valid JSON"),
        ('{"reviewerID": "A1", "asin": "B1", "overall": 5.0}', r"line 3: field 'unixReviewTime' missing"),
        ('["A1", "B1", 5.0, 1400000000]', r"line 3: not a JSON object"),
        (
            '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": "1400000000x"}',
            r"line 3: field 'unixReviewTime' = '1400000000x'",
        ),
        (
            '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1400000000.5}',
            r"line 3: field 'unixReviewTime' = 1400000000\.5",
        ),
        (
            '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": -86400}',
            r"line 3: field 'unixReviewTime' = -86400; expected a non-negative integer",
        ),
        (
            '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": NaN}',
            r"line 3: field 'unixReviewTime' = nan",
        ),
        (
            '{"reviewerID": "A1", "asin": "B1", "overall": "five", "unixReviewTime": 1}',
            r"line 3: field 'overall' = 'five'; expected a number",
        ),
    ],
)
def test_amazon_malformed_json_lines_are_named(tmp_path, line, message):
    with pytest.raises(DataError, match=r"reviews_Books_5\.json\.gz: " + message) as info:
        bad_json_line(tmp_path, line).read()
    assert "\n" not in str(info.value)


def test_truncated_gzip_is_named_and_leaves_no_processed_data(tmp_path):
    path = write_amazon_json(tmp_path / "raw" / "reviews_Books_5.json.gz", DAY_ROWS)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"reviews_Books_5\.json\.gz: truncated or corrupt gzip after line \d+"):
        load_or_build(amazon(tmp_path / "raw"), PreprocessConfig(), tmp_path / "processed")
    assert not (tmp_path / "processed").exists() or not any((tmp_path / "processed").iterdir())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda lines: lines.__setitem__(3, lines[3] + ",extra"), r"Books\.csv: .*line 4.*expected the 4 fields"),
        (
            lambda lines: lines.__setitem__(3, lines[3].rsplit(",", 1)[0]),
            r"Books\.csv: line 4: field 'timestamp' is empty",
        ),
        (
            lambda lines: lines.__setitem__(3, lines[3].rsplit(",", 1)[0] + ",1400000000123.5"),
            r"line 4: field 'timestamp' = '1400000000123\.5'; "
            r"expected a non-negative integer number of unix milliseconds",
        ),
        (
            lambda lines: lines.__setitem__(3, lines[3].rsplit(",", 1)[0] + ",-1000"),
            r"line 4: field 'timestamp' = '-1000'",
        ),
        (lambda lines: lines.__setitem__(0, "user_id,asin,rating,timestamp"), r"header .* lacks \['parent_asin'\]"),
    ],
)
def test_amazon_2023_malformed_lines_are_named(tmp_path, edit, message):
    path = write_amazon_2023(tmp_path / "Books.csv", DAY_ROWS[:8], compress=False)
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        amazon(tmp_path, "2023", filename="Books.csv").read()


def test_amazon_missing_file_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(
        DataError,
        match=r"reviews_Books_5\.json\.gz: not found.*snap\.stanford\.edu.*put 'reviews_Books_5\.json\.gz' in",
    ):
        amazon(tmp_path).files()


def test_amazon_unknown_format_or_bad_max_users_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"format='2020'; expected one of \['2014', '2018', '2023'\]"):
        AmazonSource(tmp_path, format="2020")
    with pytest.raises(ConfigError, match="max_users=0"):
        AmazonSource(tmp_path, max_users=0)


def test_empty_after_filtering_is_an_error_and_caches_nothing(tmp_path):
    write_amazon_json(tmp_path / "raw" / "reviews_Books_5.json.gz", DAY_ROWS)
    source = AmazonSource(tmp_path / "raw", max_users=2, download=False)
    with pytest.raises(DataError, match=r"no user has >= 3 events after filtering"):
        load_or_build(source, PreprocessConfig(user_core=5, item_core=5), tmp_path / "processed")
    assert not (tmp_path / "processed").exists() or not any((tmp_path / "processed").iterdir())


# --- Interaction files: RecBole .inter, CSV / TSV / Parquet -------------------------------------


def test_recbole_atomic_file_is_read_from_its_typed_header(tmp_path):
    path = write_recbole_inter(tmp_path / "shop.inter", ROWS)
    source = InteractionsFileSource(path, columns={"rating": "rating"})
    assert_reads_exactly(source, ROWS)
    assert source.read()["timestamp"].dtype == np.int64


def test_recbole_header_without_types_is_rejected(tmp_path):
    path = write_recbole_inter(tmp_path / "shop.inter", ROWS[:5])
    path.write_text(path.read_text().replace("item_id:token", "item_id"))
    with pytest.raises(DataError, match=r"shop\.inter: line 1: header field 'item_id'; expected RecBole 'name:type'"):
        InteractionsFileSource(path).read()


def test_csv_with_its_own_column_names(tmp_path):
    path = write_csv(tmp_path / "clicks.csv", ROWS, columns=("uid", "sku", "stars", "ts"))
    source = InteractionsFileSource(path, columns={"user": "uid", "item": "sku", "timestamp": "ts", "rating": "stars"})
    assert_reads_exactly(source, ROWS)
    assert source.read()["rating"].tolist() == [r for _, _, r, _ in ROWS]


def test_tsv_separator_comes_from_the_suffix(tmp_path):
    assert_reads_exactly(InteractionsFileSource(write_csv(tmp_path / "clicks.tsv", ROWS, sep="\t")), ROWS)


def test_iso_dates_and_milliseconds_give_the_same_seconds(tmp_path):
    iso = InteractionsFileSource(write_csv(tmp_path / "iso.csv", ROWS, iso=True), timestamp_unit="iso").read()
    ms_rows = [(u, i, r, t * 1000 + 7) for u, i, r, t in ROWS]
    ms = InteractionsFileSource(write_csv(tmp_path / "ms.csv", ms_rows), timestamp_unit="ms").read()
    assert iso["timestamp"].tolist() == ms["timestamp"].tolist() == [t for *_, t in ROWS]


def test_parquet_file(tmp_path):
    frame = pd.DataFrame(ROWS, columns=["user_id", "item_id", "rating", "timestamp"])
    frame.to_parquet(tmp_path / "clicks.parquet")
    assert_reads_exactly(InteractionsFileSource(tmp_path / "clicks.parquet"), ROWS)


def test_unknown_columns_in_the_config_are_named_with_what_exists(tmp_path):
    path = write_csv(tmp_path / "clicks.csv", ROWS[:5])
    with pytest.raises(
        ConfigError,
        match=r"columns\.item='sku' is not a column of the file; "
        r"available: \['user_id', 'item_id', 'rating', 'timestamp'\]",
    ):
        InteractionsFileSource(path, columns={"item": "sku"}).read()
    with pytest.raises(
        ConfigError,
        match=r"columns: unknown key\(s\) \['product'\]; expected keys \['user', 'item', 'timestamp', 'rating'\]",
    ):
        InteractionsFileSource(path, columns={"product": "item_id"})


def test_bad_timestamp_unit_or_unknown_separator_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"timestamp_unit='days'; expected one of \['iso', 'ms', 's'\]"):
        InteractionsFileSource(tmp_path / "a.csv", timestamp_unit="days")
    (tmp_path / "a.dat").write_text("user_id,item_id,timestamp\n")  # a missing file is "not found" (issue 14)
    with pytest.raises(ConfigError, match="set dataset.source.sep"):
        InteractionsFileSource(tmp_path / "a.dat")


@pytest.mark.parametrize(
    "line, unit, message",
    [
        ("u1,i1,4.0,100,7", "s", r"clicks\.csv: .*line 4.*expected the 4 fields of the header"),
        ("u1,i1,4.0", "s", r"clicks\.csv: line 4: field 'timestamp' is empty"),
        (
            "u1,i1,4.0,-100",
            "s",
            r"line 4: field 'timestamp' = '-100'; expected a non-negative integer number of unix seconds",
        ),
        ("u1,i1,4.0,NaN", "s", r"line 4: field 'timestamp' = 'NaN'"),
        ("u1,i1,4.0,12.5", "s", r"line 4: field 'timestamp' = '12\.5'"),
        ("u1,i1,4.0,yesterday", "iso", r"line 4: field 'timestamp' = 'yesterday'; expected an ISO 8601 date-time"),
        (
            "u1,i1,4.0,1969-12-31T00:00:00Z",
            "iso",
            r"line 4: field 'timestamp' = '1969-12-31T00:00:00Z'; expected an ISO 8601 date-time not before 1970",
        ),
    ],
)
def test_malformed_interaction_lines_are_named(tmp_path, line, unit, message):
    path = write_csv(tmp_path / "clicks.csv", ROWS[:5], iso=unit == "iso")
    lines = path.read_text().splitlines()
    lines[3] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        InteractionsFileSource(path, timestamp_unit=unit).read()


def test_missing_or_empty_interactions_file(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.csv: file not found"):
        InteractionsFileSource(tmp_path / "nowhere.csv").read()
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: empty file"):
        InteractionsFileSource(tmp_path / "empty.csv").read()
    (tmp_path / "header.csv").write_text("user_id,item_id,timestamp\n")
    with pytest.raises(DataError, match=r"header\.csv: no interactions found"):
        InteractionsFileSource(tmp_path / "header.csv").read()


def test_interactions_user_subsample(tmp_path):
    path = write_csv(tmp_path / "clicks.csv", ROWS)
    pick = lambda seed: set(InteractionsFileSource(path, max_users=7, seed=seed).read()["user"])  # noqa: E731
    assert len(pick(0)) == 7 and pick(0) == pick(0) != pick(1)


# --- Hydra configs ------------------------------------------------------------------------------


def compose_dataset(name: str, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="train", overrides=[f"dataset={name}", *overrides])


@pytest.mark.parametrize(
    "name, source_type, max_len",
    [
        ("ml1m", ML1MSource, 200),
        ("amazon_books", AmazonSource, 50),
        ("interactions", InteractionsFileSource, 50),
        ("synthetic", SyntheticSource, 50),
    ],
)
def test_every_dataset_config_builds_its_datamodule(tmp_path, name, source_type, max_len):
    overrides = [f"dataset.source.path={tmp_path / 'x.csv'}"] if name == "interactions" else []
    cfg = compose_dataset(name, *overrides)
    datamodule = instantiate(cfg.dataset, _convert_="all")
    assert isinstance(datamodule.source, source_type)
    assert datamodule.max_len == max_len and datamodule.name == name


def test_interactions_config_without_a_path_says_which_key_to_set():
    cfg = compose_dataset("interactions")
    with pytest.raises(Exception) as info:  # Hydra wraps constructor errors; entry points unwrap them
        instantiate(cfg.dataset.source, _convert_="all")
    assert isinstance(user_error(info.value), ConfigError)
    assert str(user_error(info.value)) == "dataset.source.path is not set; expected the interactions file to read"


def test_amazon_config_selects_the_release(tmp_path):
    cfg = compose_dataset("amazon_books", "dataset.source.format=2023")
    source = instantiate(cfg.dataset.source, _convert_="all")
    assert source.filename == "Books.csv.gz" and source.max_users == 50_000


def test_interactions_config_end_to_end_through_the_datamodule(tmp_path):
    path = write_csv(tmp_path / "clicks.csv", ROWS, columns=("uid", "sku", "stars", "ts"))
    cfg = compose_dataset(
        "interactions",
        f"dataset.source.path={path}",
        "dataset.source.columns={user: uid, item: sku, timestamp: ts}",
        "dataset.user_core=0",
        "dataset.item_core=0",
        f"dataset.cache_dir={tmp_path / 'processed'}",
    )
    datamodule = instantiate(cfg.dataset, _convert_="all")
    datamodule.setup()
    assert datamodule.data is not None
    assert sequences(datamodule.data) == expected_sequences(ROWS)


PARQUET_ROWS = {"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "timestamp": [10, 20, 30]}


def parquet(tmp_path: Path, **columns) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "clicks.parquet"
    pq.write_table(pa.table({**PARQUET_ROWS, **columns}), path)
    return path


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"user_id": ["a", None, "c"]}, r"clicks\.parquet: row 1: field 'user_id' is empty \(null\)"),
        ({"item_id": ["x", "y", None]}, r"clicks\.parquet: row 2: field 'item_id' is empty \(null\)"),
        ({"timestamp": [10, None, 30]}, r"clicks\.parquet: row 1: field 'timestamp' is empty \(null\)"),
        ({"item_id": [1.0, 2.0, 3.0]}, r"column 'item_id' holds double values; expected string or integer ids"),
        ({"timestamp": [True, False, True]}, r"column 'timestamp' holds bool values; expected integer"),
        ({"item_id": [[0], [1], [2]]}, r"column 'item_id' holds list<.*> values; expected string or integer ids"),
        ({"user_id": [{"a": 1}, {"a": 2}, {"a": 3}]}, r"column 'user_id' holds struct<.*> values"),
    ],
    ids=["null-user", "null-item", "null-timestamp", "float-items", "bool-timestamps", "list-items", "struct-users"],
)
def test_parquet_nulls_and_wrong_types_are_errors(tmp_path: Path, columns: dict, expected: str) -> None:
    with pytest.raises(DataError, match=expected) as info:
        InteractionsFileSource(parquet(tmp_path, **columns)).read()
    one_line(info.value)


def test_parquet_integer_and_dictionary_ids_are_read_as_their_text(tmp_path: Path) -> None:
    import pyarrow as pa

    path = parquet(
        tmp_path,
        user_id=pa.array(["a", "b", "c"]).dictionary_encode(),
        item_id=[7, 8, 9],
        timestamp=pa.array([10, 20, 30], pa.uint32()),
    )
    table = InteractionsFileSource(path).read()
    assert table.to_dict("list") == {"user": ["a", "b", "c"], "item": ["7", "8", "9"], "timestamp": [10, 20, 30]}


def test_any_table_with_a_missing_id_is_refused_naming_the_row() -> None:
    frame = pd.DataFrame({"user": ["a", None], "item": ["x", "y"], "timestamp": [1, 2]})
    with pytest.raises(DataError, match=r"src: row 1: field 'user' is empty"):
        validate_interactions(frame, "src")


@pytest.mark.parametrize("value", ["10000000000000000000", "99999999999999999999", "1e19", "9223372036854775808"])
def test_a_timestamp_beyond_int64_names_its_line_and_the_files_value(value: str) -> None:
    stamps = pd.Series(["100", "200", value, "300"])
    with pytest.raises(DataError, match=rf"f\.csv: line 4: field 'ts' = '{value}'; expected a non-negative integer"):
        to_unix_seconds(stamps, "s", "f.csv", "ts", first_line=2)


def test_the_largest_int64_timestamp_is_still_read_exactly() -> None:
    assert to_unix_seconds(pd.Series(["9223372036854775807"]), "s", "f", "ts", 2).tolist() == [2**63 - 1]


def test_a_missing_file_without_a_suffix_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"interactions: file not found"):
        InteractionsFileSource(tmp_path / "interactions")


def test_millisecond_timestamps_read_as_seconds_warn_with_the_likely_unit(tmp_path: Path, caplog) -> None:
    path = tmp_path / "clicks.csv"
    pd.DataFrame(
        {"user_id": ["a", "a"], "item_id": ["x", "y"], "timestamp": [1_500_000_000_000, 1_500_000_100_000]}
    ).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING):
        InteractionsFileSource(path).read()
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "clicks.csv" in warning and "year ~49,503" in warning and "milliseconds" in warning
    assert "timestamp_unit=ms" in warning


def test_plausible_seconds_do_not_warn(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        validate_interactions(pd.DataFrame({"user": ["a"], "item": ["x"], "timestamp": [1_700_000_000]}), "src")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("column, row", [("user_id", 1), ("item_id", 2)])
def test_parquet_refuses_an_empty_string_id_as_csv_refuses_an_empty_field(tmp_path: Path, column, row) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from deepm3.data.sources.interactions import InteractionsFileSource

    columns = {"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "timestamp": [10, 20, 30]}
    columns[column] = [value if i != row else "" for i, value in enumerate(columns[column])]
    pq.write_table(pa.table(columns), tmp_path / "clicks.parquet")
    (tmp_path / "clicks.csv").write_text(
        "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in zip(*columns.values()))
    )
    for name in ("clicks.parquet", "clicks.csv"):
        with pytest.raises(DataError, match=rf"clicks\.\w+: .*field '{column}' is empty") as info:
            InteractionsFileSource(tmp_path / name).read()
        assert "\n" not in str(info.value)
