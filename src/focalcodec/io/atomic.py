"""Atomic output files: a result appears complete under its name, or not at all.

Every output goes to a temporary file in the destination folder (same file system, so the
final :func:`os.replace` is atomic) and is renamed only once fully written. An exception or
Ctrl-C deletes the temporary file, so an interrupted batch leaves no partial outputs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import OutputExistsError

__all__ = ["OutputExistsError", "atomic_folder", "atomic_write", "check_output"]


def check_output(
    path: str | os.PathLike, *, force: bool = False, inputs: tuple = ()
) -> Path:
    """Refuse to overwrite an input always, and an existing output unless ``force``.

    Parameters
    ----------
    path
        The output file.
    force
        Allow replacing an existing output file.
    inputs
        Paths of the inputs that produce this output.

    Returns
    -------
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if path.exists():
        for src in inputs:
            if Path(src).exists() and os.path.samefile(src, path):
                raise OutputExistsError(f"{path}: output would overwrite its own input")
        if path.is_dir():
            raise OutputExistsError(f"{path}: output is an existing directory")
        if not force:
            raise OutputExistsError(
                f"{path}: output exists; pass --force (force=True) to overwrite it"
            )
    return path


@contextmanager
def atomic_write(
    path: str | os.PathLike, *, force: bool = False, inputs: tuple = ()
) -> Iterator[BinaryIO]:
    """Open a temporary file that replaces ``path`` when the block exits cleanly.

    Parameters
    ----------
    path
        Final destination. Missing parent folders are created.
    force
        Allow replacing an existing file (inputs are never replaced).
    inputs
        Paths the output is computed from; replacing one of them is refused.

    Yields
    ------
        A binary file object to write into.
    """
    path = check_output(path, force=force, inputs=inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        # mkstemp creates the file as 0600; give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fileobj:
            yield fileobj
            fileobj.flush()
            os.fsync(fileobj.fileno())
        os.replace(tmp, path)
    except BaseException:
        # BaseException: Ctrl-C must also remove the partial file.
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_folder(
    write: Callable[[Path], None], folder: Path, force: bool = False
) -> None:
    """Run ``write(tmp)`` into a temporary folder, then move it to ``folder``.

    The result appears complete or not at all. An existing ``folder`` is replaced only
    with ``force``.
    """
    folder = Path(folder)
    if folder.exists() and not force:
        raise OutputExistsError(f"{folder} exists; pass --force to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        if folder.exists():
            old = folder.parent / f".{folder.name}.old{os.getpid()}"
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
