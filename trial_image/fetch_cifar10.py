"""Put CIFAR-10's binary batches into a folder (a PersistentVolumeClaim) for the CIFAR-10 examples' trials.

The trials never download anything; this runs once, in a Job (examples/prepare/cifar10-data.yaml) or by hand.
The archive comes from CIFAR-10's home page or from a mirror or local file given as --source, is checked
against its MD5 sum before anything is unpacked, and only the seven files of the binary version are taken
from it (regular files, by exact name). The files appear under DEST/cifar-10-batches-bin only once all of them
were written and read back with the trial's own loader; a folder that already holds them whole is left alone,
and in a folder that holds some of them (or a cut one) they are replaced one by one, other files kept. The
scratch folder of a fetch that was killed is removed by the next one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from katib_nas.contract.errors import InvalidInput

from .durable import remove_leftover_folders

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
#: MD5 of cifar-10-binary.tar.gz as published on CIFAR-10's page.
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
FOLDER = "cifar-10-batches-bin"
SCRATCH_PREFIX = ".cifar10-"
FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin", "batches.meta.txt")
DOWNLOAD_TIMEOUT = 60
CHUNK = 1 << 20


class FetchError(InvalidInput):
    """The archive could not be had, or is not CIFAR-10's."""


def fetch_cifar10(dest: Path, source: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> Path:
    """DEST/cifar-10-batches-bin holding the binary batches; returns that folder."""
    target = dest / FOLDER
    if _complete(target):
        return target
    try:
        dest.mkdir(parents=True, exist_ok=True)
        remove_leftover_folders(dest, SCRATCH_PREFIX)  # a killed fetch's archive and files (340 MB)
    except OSError as err:
        raise FetchError(f"cannot prepare {dest}: {err.strerror or err}") from None
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=dest) as scratch:
        archive = Path(scratch) / "cifar-10-binary.tar.gz"
        _copy(source, archive)
        found = _md5(archive)
        if found != md5.lower():
            raise FetchError(f"{source} has MD5 {found}, not CIFAR-10's binary archive ({md5}); nothing was unpacked")
        unpacked = Path(scratch) / FOLDER
        _unpack(archive, unpacked, source)
        _check(unpacked, source)
        if target.is_dir():  # some of the files, or a cut one: replaced, the folder's other files kept
            for name in FILES:
                os.replace(unpacked / name, target / name)
        else:
            os.replace(unpacked, target)
    return target


def _complete(folder: Path) -> bool:
    """Every file there, the batches whole records (a copy cut short is not complete)."""
    from .data import CIFAR10_RECORD

    for name in FILES:
        path = folder / name
        if not path.is_file():
            return False
        size = path.stat().st_size
        if size == 0 or (name.endswith(".bin") and size % CIFAR10_RECORD):
            return False
    return True


def _copy(source: str, archive: Path) -> None:
    """Download (http, https) or copy (a path) the archive."""
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out, CHUNK)
        else:
            shutil.copyfile(source, archive)
    except OSError as err:  # urllib's URLError and HTTPError are OSErrors
        raise FetchError(f"cannot read {source}: {getattr(err, 'reason', None) or err.strerror or err}") from None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _unpack(archive: Path, folder: Path, source: str) -> None:
    """The seven files, by exact name and as regular files; nothing else in the archive is written."""
    folder.mkdir()
    wanted = {f"{FOLDER}/{name}": name for name in FILES}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    with tar.extractfile(member) as data, open(folder / wanted[member.name], "wb") as out:
                        shutil.copyfileobj(data, out, CHUNK)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise FetchError(f"{source} is not a readable tar.gz archive: {err}") from None
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise FetchError(f"{source} lacks {', '.join(missing)} under {FOLDER}/")


def _check(folder: Path, source: str) -> None:
    """The batches load with the trial's CIFAR-10 reader."""
    from .data import DataError, load_cifar10

    try:
        load_cifar10(folder)
        load_cifar10(folder, "test_batch.bin")
    except DataError as err:
        raise FetchError(f"{source}: {err}") from None
