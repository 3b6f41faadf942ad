"""Fetch raw archives safely: checksum-verified, resumable, atomic, and never outside the cache.

No test touches the internet; the tests serve fixture files from a loopback HTTP server.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from deepm3.errors import DataError

CHUNK = 1 << 20


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
            f"{path}: {algorithm} {actual} does not match the expected {want};"
            " delete the file and download it again"
        )


def ensure_file(dest: Path, url: str | None, checksum: str | None, progress: bool = True) -> Path:
    """Return ``dest``, downloading it from ``url`` first when it is not there.

    A file put in place by hand is used as is, after its checksum where one is known.
    When the download fails the error names the URL, the file and the folder to put it in.
    """
    dest = Path(dest)
    if dest.exists():
        verify_checksum(dest, checksum)
        return dest
    if url is None:
        raise DataError(f"{dest}: file not found; put it in {dest.parent}/")
    download(url, dest, checksum=checksum, progress=progress)
    return dest


def ensure_extracted(member: Path, archive: Path, url: str | None, checksum: str | None,
                     download: bool = True, progress: bool = True) -> Path:
    """Return ``member``, a file that ``archive`` holds once extracted into ``archive.parent``.

    A member already on disk is used as is (put there by hand or extracted earlier); else the
    archive -- put there by hand, or downloaded when ``download`` is on -- is checksum-verified
    and safely extracted. Every failure names what to fetch and the folder to put it in.
    """
    member, archive = Path(member), Path(archive)
    if member.is_file():
        return member
    if not archive.exists() and not download:
        raise DataError(
            f"{member}: not found and download=false; download {url} and put '{archive.name}'"
            f" in {archive.parent}/ (or '{member.name}' in {member.parent}/)"
        )
    ensure_file(archive, url, checksum, progress=progress)
    safe_extract_zip(archive, archive.parent)
    if not member.is_file():
        raise DataError(f"{archive}: the archive has no {member.relative_to(archive.parent)}; delete it and download again")
    return member


def download(url: str, dest: Path, checksum: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part`` (resumed when the server allows ranges).

    The file appears at ``dest`` only after its checksum passed; a bad download is removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
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
            with open(part, mode) as handle, tqdm(
                total=total_bytes, initial=offset, unit="B", unit_scale=True,
                desc=dest.name, disable=not progress,
            ) as bar:
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
            f"could not download {url} ({reason}); download it by hand and put"
            f" '{dest.name}' in {dest.parent}/"
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

    Extraction goes to a temporary sibling folder first, so a truncated archive leaves
    nothing half-extracted behind.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    root = dest_dir.resolve()
    tmp_dir = dest_dir.with_name(dest_dir.name + ".extracting")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                target = (root / name).resolve()
                if name.startswith("/") or not target.is_relative_to(root):
                    raise DataError(
                        f"{archive}: member '{name}' would be written outside {dest_dir};"
                        " refusing to extract this archive"
                    )
            zf.extractall(tmp_dir)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise DataError(f"{archive}: not a valid zip archive ({exc}); delete it and download again") from None
    except (EOFError, zipfile.LargeZipFile, OSError) as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise DataError(f"{archive}: truncated or unreadable zip ({exc}); delete it and download again") from None
    except DataError:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    dest_dir.mkdir(parents=True, exist_ok=True)
    for child in tmp_dir.iterdir():
        target = dest_dir / child.name
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(child, target)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    return [dest_dir / n for n in names]
