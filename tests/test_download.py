"""Downloads against a loopback HTTP server: progress, checksum, resume, atomicity, safe extraction.

No test touches the internet: ``served`` starts ``http.server`` on 127.0.0.1 in a thread,
serving in-memory files with HTTP Range support (or not), and can cut a transfer short.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deepm3.data.download import download, ensure_extracted, ensure_file, safe_extract_zip
from deepm3.data.sources.ml1m import ML1MSource
from deepm3.errors import DataError
from tests.helpers.concurrency_workers import extract_worker, fetch_worker
from tests.helpers.fixtures_raw import interaction_rows, ml1m_zip_bytes
from tests.helpers.http_files import served
from tests.helpers.user_errors import one_line

ROWS = interaction_rows(users=12, items=10, user_prefix="", item_prefix="")
ARCHIVE = ml1m_zip_bytes(ROWS)
MD5 = "md5:" + hashlib.md5(ARCHIVE).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """What a fetch left in ``folder``, its lock file aside (``.<archive>.lock``: issue 14)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


def test_download_shows_progress_and_moves_the_verified_file_into_place(tmp_path, capsys):
    with served({"/ml-1m.zip": ARCHIVE}) as site:
        dest = download(f"{site.url}/ml-1m.zip", tmp_path / "ml-1m.zip", checksum=MD5, progress=True)
    assert dest.read_bytes() == ARCHIVE
    assert leftovers(tmp_path) == ["ml-1m.zip"]
    progress = capsys.readouterr().err
    assert "ml-1m.zip" in progress and "100%" in progress


def test_wrong_checksum_leaves_nothing_behind(tmp_path):
    with served({"/ml-1m.zip": ARCHIVE}) as site:
        with pytest.raises(DataError, match="failed its checksum"):
            download(f"{site.url}/ml-1m.zip", tmp_path / "ml-1m.zip", checksum="md5:" + "0" * 32, progress=False)
    assert leftovers(tmp_path) == []


def test_download_resumes_a_partial_file_with_a_range_request(tmp_path):
    (tmp_path / "ml-1m.zip.part").write_bytes(ARCHIVE[:1000])
    with served({"/ml-1m.zip": ARCHIVE}) as site:
        download(f"{site.url}/ml-1m.zip", tmp_path / "ml-1m.zip", checksum=MD5, progress=False)
    assert site.requests == [("/ml-1m.zip", "bytes=1000-")]
    assert (tmp_path / "ml-1m.zip").read_bytes() == ARCHIVE
    assert leftovers(tmp_path) == ["ml-1m.zip"]


def test_download_starts_over_when_the_server_ignores_ranges(tmp_path):
    (tmp_path / "ml-1m.zip.part").write_bytes(b"garbage that is not the archive's prefix")
    with served({"/ml-1m.zip": ARCHIVE}, ranges=False) as site:
        download(f"{site.url}/ml-1m.zip", tmp_path / "ml-1m.zip", checksum=MD5, progress=False)
    assert (tmp_path / "ml-1m.zip").read_bytes() == ARCHIVE


def test_a_part_file_that_is_already_whole_is_finished_without_refetching(tmp_path):
    (tmp_path / "ml-1m.zip.part").write_bytes(ARCHIVE)
    with served({"/ml-1m.zip": ARCHIVE}) as site:
        download(f"{site.url}/ml-1m.zip", tmp_path / "ml-1m.zip", checksum=MD5, progress=False)
    assert site.requests == [("/ml-1m.zip", f"bytes={len(ARCHIVE)}-")]
    assert leftovers(tmp_path) == ["ml-1m.zip"]


def test_interrupted_download_is_never_the_final_file_and_resumes_later(tmp_path):
    dest = tmp_path / "ml-1m.zip"
    with served({"/ml-1m.zip": ARCHIVE}, cut_after=700) as site:
        with pytest.raises(DataError, match=r"could not download .*ml-1m\.zip.*put 'ml-1m\.zip' in"):
            download(f"{site.url}/ml-1m.zip", dest, checksum=None, progress=False)
        assert not dest.exists()
        assert (tmp_path / "ml-1m.zip.part").stat().st_size == 700
        site.cut_after = None
        download(f"{site.url}/ml-1m.zip", dest, checksum=MD5, progress=False)
    assert site.requests[-1] == ("/ml-1m.zip", "bytes=700-")
    assert dest.read_bytes() == ARCHIVE


def test_unreachable_url_names_the_url_the_file_and_the_folder(tmp_path):
    with served({}) as site:
        url = f"{site.url}/ml-1m.zip"
        with pytest.raises(DataError) as info:
            ensure_file(tmp_path / "raw" / "ml-1m.zip", url, MD5, progress=False)
    message = str(info.value)
    assert url in message and "'ml-1m.zip'" in message and str(tmp_path / "raw") in message
    assert "\n" not in message
    assert leftovers(tmp_path / "raw") == []


def test_a_file_put_in_place_by_hand_is_used_after_its_checksum(tmp_path):
    (tmp_path / "ml-1m.zip").write_bytes(ARCHIVE)
    assert ensure_file(tmp_path / "ml-1m.zip", "http://127.0.0.1:9/never-contacted", MD5) == tmp_path / "ml-1m.zip"
    (tmp_path / "bad.zip").write_bytes(ARCHIVE[:-10])
    with pytest.raises(DataError, match="does not match the expected"):
        ensure_file(tmp_path / "bad.zip", None, MD5)


def test_ml1m_source_downloads_verifies_and_extracts_through_the_server(tmp_path):
    with served({"/ml-1m.zip": ARCHIVE}) as site:
        source = ML1MSource(tmp_path / "ml1m", url=f"{site.url}/ml-1m.zip", checksum=MD5)
        table = source.read()
        assert len(site.requests) == 1
        source.read()  # extracted files are reused: no second request
        assert len(site.requests) == 1
    assert len(table) == len(ROWS)
    assert leftovers(tmp_path / "ml1m") == ["ml-1m", "ml-1m.zip"]


def test_ml1m_offline_without_download_says_what_to_fetch_and_where(tmp_path):
    source = ML1MSource(tmp_path / "ml1m", download=False)
    with pytest.raises(
        DataError, match=r"files\.grouplens\.org/datasets/movielens/ml-1m\.zip.*'ml-1m\.zip' in .*ml1m/"
    ):
        source.files()


def test_truncated_zip_is_a_clear_error_and_extracts_nothing(tmp_path):
    (tmp_path / "ml-1m.zip").write_bytes(ARCHIVE[: len(ARCHIVE) // 2])
    with pytest.raises(DataError, match=r"ml-1m\.zip: .*(zip|truncated).*delete it and download again"):
        ensure_extracted(tmp_path / "ml-1m" / "ratings.dat", tmp_path / "ml-1m.zip", url=None, checksum=None)
    assert leftovers(tmp_path) == ["ml-1m.zip"]


def test_zip_members_cannot_escape_the_cache_folder(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "1::1::5::1\n")
        zf.writestr("../escaped.txt", "owned")
    with pytest.raises(DataError, match="outside"):
        safe_extract_zip(evil, tmp_path / "cache")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "cache").exists()


def big_archive(path: Path) -> bytes:
    """An ``ml-1m.zip`` whose ratings.dat (~3 MB) takes a while to extract."""
    rng = np.random.default_rng(0)
    users, items, stamps = (
        rng.integers(1, 6000, 150_000),
        rng.integers(1, 4000, 150_000),
        rng.integers(9e8, 1e9, 150_000),
    )
    ratings = "".join(f"{u}::{i}::5::{t}\n" for u, i, t in zip(users, items, stamps)).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-1m/movies.dat", "1::Toy Story (1995)::Animation\n")
        zf.writestr("ml-1m/ratings.dat", ratings)
        zf.writestr("ml-1m/users.dat", "1::F::1::10::48067\n")
    return ratings


def run_processes(target, args: list[tuple]) -> list[tuple]:
    context = multiprocessing.get_context("spawn")  # children import only deepm3.data.download
    barrier, results = context.Barrier(len(args)), context.Queue()
    processes = [context.Process(target=target, args=(barrier, results, *a)) for a in args]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=240) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    return sorted(outcomes)


def visible(folder: Path) -> list[str]:
    """What a user sees in a folder: no lock files."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_processes_extracting_one_archive_at_once_all_get_the_whole_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    ratings = big_archive(raw / "ml-1m.zip")
    whole = ("ok", len(ratings), hashlib.sha256(ratings).hexdigest())
    member = raw / "ml-1m" / "ratings.dat"
    for _ in range(2):  # the race lost data in most trials; two rounds of four processes
        shutil.rmtree(raw / "ml-1m", ignore_errors=True)
        outcomes = run_processes(extract_worker, [(str(member), str(raw / "ml-1m.zip"))] * 4)
        assert outcomes == [whole] * 4
        assert member.read_bytes() == ratings
        assert visible(raw) == ["ml-1m", "ml-1m.zip"]
        assert sorted(p.name for p in (raw / "ml-1m").iterdir()) == ["movies.dat", "ratings.dat", "users.dat"]


def test_processes_downloading_one_archive_at_once_fetch_it_once(tmp_path: Path) -> None:
    body = tmp_path / "served.zip"
    ratings = big_archive(body)
    archive = body.read_bytes()
    raw = tmp_path / "raw"
    with served({"/ml-1m.zip": archive}) as site:
        outcomes = run_processes(
            fetch_worker,
            [
                (
                    str(raw / "ml-1m" / "ratings.dat"),
                    str(raw / "ml-1m.zip"),
                    f"{site.url}/ml-1m.zip",
                    "md5:" + hashlib.md5(archive).hexdigest(),
                )
            ]
            * 3,
        )
    assert outcomes == [("ok", len(ratings), hashlib.sha256(ratings).hexdigest())] * 3
    assert len(site.requests) == 1
    assert (raw / "ml-1m.zip").read_bytes() == archive
    assert visible(raw) == ["ml-1m", "ml-1m.zip"]


def test_extracted_files_honour_the_umask(tmp_path: Path, umask) -> None:
    archive = tmp_path / "a.zip"
    big_archive(archive)
    safe_extract_zip(archive, tmp_path / "raw")
    assert stat.S_IMODE((tmp_path / "raw" / "ml-1m").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "raw" / "ml-1m" / "ratings.dat").stat().st_mode) == 0o644


def test_a_zip_with_a_symlink_member_is_refused_as_such(tmp_path: Path) -> None:
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("ml-1m")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        link.create_system = 3
        zf.writestr(link, "/etc")
        zf.writestr("ml-1m/ratings.dat", "1::1::5::1\n")
    with pytest.raises(DataError, match=r"member 'ml-1m' is a symbolic link") as info:
        ensure_extracted(tmp_path / "ml-1m" / "ratings.dat", archive, url=None, checksum=None)
    assert "truncated" not in one_line(info.value)
    assert visible(tmp_path) == ["ml-1m.zip"]
