"""Fetch raw archives safely: checksum-verified, resumable, atomic, and never outside the cache.

Safe under concurrency: fetching and extracting one archive holds a file lock
(``.<archive>.lock`` beside it), so processes that start together (a sweep's first jobs)
download it once and extract it once; extraction goes through a per-process temporary
folder and every file is renamed into place atomically, so no reader sees a partial file.

No test touches the internet; the tests serve fixture files from a loopback HTTP server.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from tqdm.auto import tqdm

from deepm3.errors import DataError

CHUNK = 1 << 20
WRITE_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    getattr(errno, "EDQUOT", errno.ENOSPC),
    errno.ENOTDIR,
    errno.EISDIR,
}


def fetch_lock(path: Path) -> FileLock:
    """The inter-process lock for downloading or extracting ``path`` (``.<name>.lock`` beside it)."""
    path = Path(path)
    return FileLock(str(path.with_name(f".{path.name}.lock")))


@contextmanager
def _holding(path: Path) -> Iterator[None]:
    """Hold ``path``'s :func:`fetch_lock`; a folder where no lock file can be made is a one-line error."""
    lock = fetch_lock(path)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as exc:
        raise DataError(
            f"{Path(path).parent}: cannot write there ({exc.strerror or exc}); "
            "make it writable or point paths.data_dir at a writable folder"
        ) from None
    try:
        yield
    finally:
        lock.release()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (raw files can be several GB)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: Path, expected: str | None) -> None:
    """Raise a one-line error when ``path`` does not match ``expected``.

    ``expected`` is ``"<algorithm>:<hex>"`` (``sha256:...``, ``md5:...``; GroupLens publishes
    md5 sums) or a bare sha256 hex string; ``None`` skips the check.
    """
    if expected is None:
        return
    algorithm, _, want = expected.rpartition(":")
    algorithm = algorithm or "sha256"
    actual = file_digest(path, algorithm)
    if actual != want.lower():
        raise DataError(
            f"{path}: {algorithm} {actual} does not match the expected {want}; delete the file and download it again"
        )


def ensure_file(dest: Path, url: str | None, checksum: str | None, progress: bool = True) -> Path:
    """Return ``dest``, downloading it from ``url`` first when it is not there.

    A file put in place by hand is used as is, after its checksum where one is known.
    When the download fails the error names the URL, the file and the folder to put it in.
    Processes asking for the same file at once download it once (a file lock).
    """
    dest = Path(dest)
    if dest.exists():
        verify_checksum(dest, checksum)
        return dest
    if url is None:
        raise DataError(f"{dest}: file not found; put it in {dest.parent}/")
    with _holding(dest):
        return _ensure_file(dest, url, checksum, progress)


def _ensure_file(dest: Path, url: str | None, checksum: str | None, progress: bool) -> Path:
    """:func:`ensure_file` for a caller that holds ``dest``'s lock."""
    if dest.exists():  # another process fetched it while this one waited for the lock
        verify_checksum(dest, checksum)
        return dest
    if url is None:
        raise DataError(f"{dest}: file not found; put it in {dest.parent}/")
    _download(url, dest, checksum=checksum, progress=progress)
    return dest


def ensure_extracted(
    member: Path, archive: Path, url: str | None, checksum: str | None, download: bool = True, progress: bool = True
) -> Path:
    """Return ``member``, a file that ``archive`` holds once extracted into ``archive.parent``.

    A member already on disk is used as is (put there by hand or extracted earlier); else the
    archive -- put there by hand, or downloaded when ``download`` is on -- is checksum-verified
    and safely extracted. Every failure names what to fetch and the folder to put it in.
    Fetch and extraction hold the archive's lock: concurrent callers wait, then find the member.
    """
    member, archive = Path(member), Path(archive)
    if member.is_file():
        return member
    if not archive.exists() and not download:
        raise DataError(
            f"{member}: not found and download=false; download {url} and put '{archive.name}'"
            f" in {archive.parent}/ (or '{member.name}' in {member.parent}/)"
        )
    with _holding(archive):
        if member.is_file():  # extracted by another process while this one waited
            return member
        _ensure_file(archive, url, checksum, progress)
        _extract_zip(archive, archive.parent)
    if not member.is_file():
        raise DataError(
            f"{archive}: the archive has no {member.relative_to(archive.parent)}; delete it and download again"
        )
    return member


def download(url: str, dest: Path, checksum: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part`` (resumed when the server allows ranges).

    The file appears at ``dest`` only after its checksum passed; a bad download is removed.
    The ``.part`` file is written under ``dest``'s lock, so two processes never share it.
    """
    dest = Path(dest)
    with _holding(dest):
        return _download(url, dest, checksum, progress)


def _download(url: str, dest: Path, checksum: str | None, progress: bool) -> Path:
    """:func:`download` for a caller that holds ``dest``'s lock."""
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "deepm3"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if offset and response.status != 206:
                offset = 0  # the server ignored the range: start again
            total = response.headers.get("Content-Length")
            total_bytes = int(total) + offset if total is not None else None
            mode = "ab" if offset else "wb"
            with (
                open(part, mode) as handle,
                tqdm(
                    total=total_bytes,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                ) as bar,
            ):
                for block in iter(lambda: response.read(CHUNK), b""):
                    handle.write(block)
                    bar.update(len(block))
            received = part.stat().st_size
            if total_bytes is not None and received < total_bytes:  # kept as .part: the next call resumes it
                raise OSError(f"connection closed after {received} of {total_bytes} bytes")
    except urllib.error.HTTPError as exc:
        if not (exc.code == 416 and offset):  # 416 on a resume: the .part is already whole
            raise DataError(
                f"could not download {url} (HTTP {exc.code} {exc.reason}); download it by hand and put"
                f" '{dest.name}' in {dest.parent}/"
            ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"could not download {url} ({reason}); download it by hand and put '{dest.name}' in {dest.parent}/"
        ) from None
    try:
        verify_checksum(part, checksum)
    except DataError:
        part.unlink(missing_ok=True)
        raise DataError(
            f"{url}: downloaded file failed its checksum ({checksum} expected); removed it,"
            f" try again or put a good '{dest.name}' in {dest.parent}/"
        ) from None
    os.replace(part, dest)
    return dest


def safe_extract_zip(archive: Path, dest_dir: Path) -> list[Path]:
    """Extract ``archive`` into ``dest_dir``; refuse any member that would land outside it.

    Holds the archive's lock. Extraction goes to a temporary folder of this process first,
    and each file is then renamed into place, so a truncated archive leaves nothing
    half-extracted behind and a concurrent reader never sees a partial file.
    """
    with _holding(Path(archive)):
        return _extract_zip(Path(archive), Path(dest_dir))


def _extract_zip(archive: Path, dest_dir: Path) -> list[Path]:
    """:func:`safe_extract_zip` for a caller that holds the archive's lock."""
    root = dest_dir.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_member(info, root, archive, dest_dir)
            created = not dest_dir.exists()
            tmp_dir = _temporary_folder(dest_dir, archive)
            done = False
            try:
                zf.extractall(tmp_dir)
                _publish(tmp_dir, dest_dir)
                done = True
            finally:
                shutil.rmtree(tmp_dir, ignore_errors=True)
                if created and not done:  # leave no empty folder behind either
                    _remove_if_empty(dest_dir)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise DataError(
            f"{archive}: not a valid or complete zip archive ({exc}); delete it and download again"
        ) from None
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS and not _same(exc.filename, archive):
            raise DataError(
                f"{dest_dir}: cannot extract {archive.name} there ({exc.strerror}); "
                "make the folder writable (and check free space) or point paths.data_dir elsewhere"
            ) from None
        raise DataError(f"{archive}: truncated or unreadable zip ({exc}); delete it and download again") from None
    return [dest_dir / info.filename for info in infos]


def _check_member(info: zipfile.ZipInfo, root: Path, archive: Path, dest_dir: Path) -> None:
    name = info.filename
    target = (root / name).resolve()
    if name.startswith("/") or not target.is_relative_to(root):
        raise DataError(
            f"{archive}: member '{name}' would be written outside {dest_dir}; refusing to extract this archive"
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DataError(
            f"{archive}: member '{name.rstrip('/')}' is a symbolic link; refusing to extract this archive "
            "(the published archive holds none: download it again from the original site)"
        )


def _temporary_folder(dest_dir: Path, archive: Path) -> Path:
    """A folder of this process's own inside ``dest_dir`` (same file system: renames are atomic)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{archive.name}.extracting-", dir=dest_dir))


def _publish(tmp_dir: Path, dest_dir: Path) -> None:
    """Move everything under ``tmp_dir`` to the same place under ``dest_dir``, one atomic rename per file."""
    for folder, dirs, files in os.walk(tmp_dir):
        relative = Path(folder).relative_to(tmp_dir)
        (dest_dir / relative).mkdir(parents=True, exist_ok=True)  # plain mkdir: the umask applies
        for name in files:
            os.replace(Path(folder) / name, dest_dir / relative / name)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _same(filename: object, path: Path) -> bool:
    return filename is not None and Path(str(filename)).resolve() == path.resolve()
