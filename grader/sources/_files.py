"""File plumbing shared by the sources: staged (atomic) preparation, atomic writes, checksums,
and the one way a missing file is reported (DatasetMissing, which names the prepare command).

Why staging: a download can die half way (network, disk, Ctrl-C). Each source builds its folder
under data_dir/.<id>.staging and renames it to data_dir/<id> only once it is complete, so a
reader never sees half a data set, and `prepare` treats "data_dir/<id> exists" as done. The
staging folder keeps its name between attempts, so torchvision and fastdownload find archives
already fetched (they skip a file whose checksum matches) and a retry does not start over.
A lock file keeps two concurrent `prepare` calls from building the same folder.
"""

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from grader.errors import DatasetMissing

HASH_CHUNK_BYTES = 1 << 20  # read size while hashing a file (1 MiB)


def source_dir(data_dir: Path, source_id: str) -> Path:
    """Where a prepared source lives: data_dir/<id>."""
    return Path(data_dir) / source_id


@contextlib.contextmanager
def staged(data_dir: Path, source_id: str) -> Iterator[Path | None]:
    """Yield a staging folder to build data_dir/<id> in, then move it into place; yield None
    when data_dir/<id> is already there (another process may just have finished it)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    final = source_dir(data_dir, source_id)
    staging = data_dir / f".{source_id}.staging"
    with open(data_dir / f".{source_id}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.exists():
            yield None
            return
        staging.mkdir(exist_ok=True)
        yield staging
        os.replace(staging, final)  # atomic on one file system: all or nothing


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file so that a concurrent reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # integrity against a published md5, not security
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def require(source_id: str, *paths: Path) -> None:
    """DatasetMissing (naming `grader datasets prepare <id>`) for the first path not on disk."""
    for path in paths:
        if not Path(path).exists():
            raise DatasetMissing(source_id, f"no {path}")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


FASTDOWNLOAD_ARCHIVE_FOLDER = "archive"  # where fastdownload keeps the archive, under a source's folder


def fastdownload_get(url: str, into: Path) -> Path:
    """Fetch and extract `url` the way fastai's `untar_data` does (fastdownload, checked against
    fastai's own download_checks.py where it lists the URL), but into `into` rather than
    ~/.fastai: the archive in into/archive/, the extracted folder in into/<archive stem>/
    (fastdownload also leaves its config.ini in `into`). Returns the extracted folder."""
    import fastai.data  # only for the location of fastai's download_checks.py; cheap
    from fastdownload import FastDownload

    downloader = FastDownload(base=into, archive=FASTDOWNLOAD_ARCHIVE_FOLDER, data=".",
                              module=fastai.data)
    return Path(downloader.get(url))
