"""Atomic output files: a result appears complete under its name, or not at all.

Every decision about an output is made on its fully resolved path (:func:`resolve`:
``..``, ``.`` and symlinks, also through folders that do not exist yet) before anything is
created, and identity with an input is decided by device and inode, so a hard link or a
second spelling of an input is recognised too. Inputs are never replaced, even with
``force``.

Every output goes to a hidden temporary file in the destination folder (same file
system) and is published only once fully written:

* with ``force``, by :func:`os.replace` (atomic);
* without it, by :func:`os.link` (which fails if the name exists) and an unlink of the
  temporary name, so that of two writers racing for one name exactly one wins and the
  other gets :class:`~focalcodec.errors.OutputExistsError`, even when both checked
  before either wrote. File systems without hard links fall back to reserving the name
  with an exclusive create (``O_EXCL``) just before the rename.

An exception or Ctrl-C deletes the temporary file, so an interrupted batch leaves no
partial outputs. ``kill -9`` cannot be caught: it may leave a hidden
``.NAME.XXXXXXXX.part`` file, never a partial file under an output's name. A name too
long to take the extra characters within the file system's ``NAME_MAX`` gives a
temporary name cut short and tagged with a digest of the full name.

A write that fails (disk full, a folder that is not writable, a failing device) is one
:class:`~focalcodec.errors.OutputError` that names the output, and leaves nothing.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import FocalCodecError, OutputError, OutputExistsError
from .sources import is_seekable

__all__ = [
    "Output",
    "OutputExistsError",
    "atomic_folder",
    "atomic_write",
    "check_output",
    "file_id",
    "output_file",
    "resolve",
    "same_file",
    "temp_prefix",
]

PathLike = str | os.PathLike
# os.link fails with these where the file system has no hard links: fall back to O_EXCL.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}
# Longest file name when the file system does not say (Linux, macOS, Windows: 255).
_NAME_MAX = 255
# Characters that mkstemp/mkdtemp add to a prefix (the random part) and our suffixes.
_RANDOM = 8


def temp_prefix(folder: Path, name: str, reserve: int) -> str:
    """``.NAME.``, or a shorter hidden prefix, such that the prefix plus ``reserve``
    more bytes is a valid file name in ``folder`` (within ``NAME_MAX``).

    A cut name ends with ``~`` and 8 hex digits of the full name's digest, so that the
    temporary files of two long names that start alike can be told apart.
    """
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = _NAME_MAX
    raw = os.fsencode(name)
    if len(raw) + 2 + reserve <= limit:
        return f".{name}."
    tag = "~" + hashlib.sha256(raw).hexdigest()[:8]
    room = max(limit - 2 - reserve - len(tag), 0)
    # Cut on a character boundary of the name's UTF-8 bytes.
    short = raw[:room].decode("utf-8", errors="ignore")
    while len(os.fsencode(short)) > room:
        short = short[:-1]
    return f".{short}{tag}."


def _system_error(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class _Guarded:
    """A file object whose write and flush errors name the output.

    Everything else is the wrapped file's own (seek, tell, read, fileno, ...), so
    audio and array writers see an ordinary seekable binary file.
    """

    def __init__(self, fileobj: BinaryIO, spelled: PathLike) -> None:
        self._file = fileobj
        self._spelled = spelled

    def write(self, data) -> int:
        try:
            return self._file.write(data)
        except FocalCodecError:
            raise
        except OSError as exc:
            raise _output_error(self._spelled, exc) from exc

    def flush(self) -> None:
        try:
            self._file.flush()
        except OSError as exc:
            raise _output_error(self._spelled, exc) from exc

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def _output_error(spelled: PathLike, exc: OSError) -> OutputError:
    return OutputError(f"{spelled}: cannot write the output ({_system_error(exc)})")


def resolve(path: PathLike) -> Path:
    """The absolute path ``path`` names once its missing folders exist.

    Symlinks of the existing part are followed and ``..`` is applied after them, as
    the operating system will when the folders are created: ``nosuch/../a.wav`` is
    ``a.wav`` of the current folder, and ``link/../x`` is next to the link's target.
    """
    return Path(os.path.realpath(os.fspath(path)))


def file_id(path: PathLike) -> tuple[int, int] | None:
    """``(device, inode)`` of an existing file (symlinks followed), else None.

    The path is resolved first, so ``nosuch/../a.wav`` names ``a.wav`` here too.
    """
    try:
        st = os.stat(resolve(path))
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two spellings name one file: same resolved path, or same device+inode."""
    if resolve(a) == resolve(b):
        return True
    ida = file_id(a)
    return ida is not None and ida == file_id(b)


def _input_of(path: Path, inputs: Iterable[PathLike]) -> PathLike | None:
    target = file_id(path)
    for src in inputs:
        if resolve(src) == path or (target is not None and file_id(src) == target):
            return src
    return None


def check_output(path: PathLike, *, force: bool = False, inputs: Iterable = ()) -> Path:
    """Refuse to write an input always, and an existing output unless ``force``.

    Parameters
    ----------
    path
        The output file, in any spelling.
    force
        Allow replacing an existing output file.
    inputs
        Paths of the inputs; an output that is one of them (by resolved path, or by
        device and inode: hard links, symlinks) is refused even with ``force``.

    Returns
    -------
        The resolved output path, where the file will be written.
    """
    target = resolve(path)
    src = _input_of(target, inputs)
    if src is not None:
        raise OutputExistsError(
            f"{path}: output would overwrite its own input {src}; inputs are never "
            "overwritten, even with --force: choose another output"
        )
    if target.is_dir():
        raise OutputExistsError(f"{path}: output is an existing directory")
    if target.exists() and not force:
        raise OutputExistsError(
            f"{path}: output exists; pass --force (force=True) to overwrite it"
        )
    return target


@contextmanager
def atomic_write(
    path: PathLike, *, force: bool = False, inputs: Iterable = ()
) -> Iterator[BinaryIO]:
    """Open a temporary file that becomes ``path`` when the block exits cleanly.

    Parameters
    ----------
    path
        Final destination, in any spelling (resolved first). Missing parent folders
        are created.
    force
        Allow replacing an existing file (inputs are never replaced).
    inputs
        Paths the output is computed from; writing one of them is refused.

    Yields
    ------
        A binary, seekable file object to write into.

    Raises
    ------
    OutputExistsError
        The output is an input, or exists (or appeared while writing) without ``force``.
    """
    inputs = tuple(inputs)
    target = check_output(path, force=force, inputs=inputs)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        prefix = temp_prefix(target.parent, target.name, _RANDOM + len(".part"))
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".part")
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot create the output in {target.parent} "
            f"({_system_error(exc)})"
        ) from exc
    try:
        # mkstemp creates the file as 0600; give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "w+b") as fileobj:
            guarded = _Guarded(fileobj, path)
            yield guarded  # type: ignore[misc]
            guarded.flush()
            try:
                os.fsync(fileobj.fileno())
            except OSError as exc:
                raise _output_error(path, exc) from exc
        # Checked again: the name may have become an input's link while we wrote.
        check_output(path, force=True, inputs=inputs)
        _publish(tmp, target, force, path)
    except BaseException:
        # BaseException: Ctrl-C must also remove the partial file.
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _publish(tmp: str, target: Path, force: bool, spelled: PathLike) -> None:
    """Give ``tmp`` its final name: replacing only with ``force``, atomically."""
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise _appeared(spelled) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        _reserve(target, spelled)
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _reserve(target: Path, spelled: PathLike) -> None:
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise _appeared(spelled) from None


def _appeared(spelled: PathLike) -> OutputExistsError:
    return OutputExistsError(
        f"{spelled}: output was created by another process while this one was "
        "writing; it was left alone (pass --force to overwrite it)"
    )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_folder(
    write: Callable[[Path], None], folder: PathLike, force: bool = False
) -> None:
    """Run ``write(tmp)`` into a temporary folder, then move it to ``folder``.

    The result appears complete or not at all. An existing ``folder`` is replaced only
    with ``force``; without it, a folder that appears meanwhile (a racing writer) is
    kept and :class:`OutputExistsError` raised, since renaming a folder onto a folder
    that holds anything fails.
    """
    spelled = folder
    folder = resolve(folder)
    if folder.exists() and not force:
        raise OutputExistsError(f"{spelled} exists; pass --force to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    prefix = temp_prefix(folder.parent, folder.name, _RANDOM + len("tmp"))
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=prefix + "tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
        write(tmp)
        if folder.exists() and force:
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=prefix))
            os.replace(folder, old / "old")
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            _rename_folder(tmp, folder, spelled)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _rename_folder(tmp: Path, folder: Path, spelled: PathLike) -> None:
    if folder.exists():
        raise OutputExistsError(f"{spelled} appeared meanwhile; it was left alone")
    try:
        os.rename(tmp, folder)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise OutputExistsError(
                f"{spelled} appeared meanwhile; it was left alone"
            ) from None
        raise


class Output:
    """What :func:`output_file` yields: the file to write, and afterwards its size."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self.file = fileobj
        self.size = 0


@contextmanager
def output_file(
    dest: PathLike | BinaryIO, *, force: bool = False, inputs: Iterable = ()
) -> Iterator[Output]:
    """A seekable file that becomes ``dest`` when the block exits cleanly.

    ``dest`` may be a path (written with :func:`atomic_write`: never an input, never an
    existing file without ``force``), a seekable binary file object (written in place,
    from where it stands), or a stream that cannot seek, such as stdout or a socket
    (the bytes go to a temporary file first and are copied out once complete, so a
    failure sends nothing). ``Output.size`` holds the bytes written after the block.
    """
    if isinstance(dest, (str, os.PathLike)):
        with atomic_write(dest, force=force, inputs=inputs) as fileobj:
            out = Output(fileobj)
            yield out
            # The end, not tell(): audio writers seek back to finish their header.
            out.size = fileobj.seek(0, os.SEEK_END)
        return
    if is_seekable(dest):
        start = dest.tell()
        out = Output(dest)
        yield out
        out.size = dest.seek(0, os.SEEK_END) - start
        return
    with tempfile.TemporaryFile() as fileobj:
        out = Output(fileobj)
        yield out
        out.size = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(0)
        shutil.copyfileobj(fileobj, dest)
        flush = getattr(dest, "flush", None)
        if flush is not None:
            flush()
