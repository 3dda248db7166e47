"""Atomic file writes, the run folder's lock, and the test-only fault hook.

A failing run never leaves a half-written file where a good one was (docs/DESIGN.md §6, §9).
"""

from __future__ import annotations

import errno
import glob
import io
import json
import os
import re
import signal
import stat
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

FAULT_ENV = "DML_EXPLORER_FAULT"
_fault_hits: dict[str, int] = {}


def fault_point(point: str, target: str = "") -> None:
    """Test-only fault injection (``tests/test_faults.py``); does nothing unless the environment
    variable ``DML_EXPLORER_FAULT`` is set to ``<point>[@<target>]:<N>[:<SIGNAL>]``.

    The N-th time the write path passes ``point`` (for ``target``, when given) the process sends
    itself ``SIGNAL`` (default KILL). Points: ``tmp_written`` (a temporary file is complete, not yet
    renamed), ``renamed`` (it was moved into place), ``state_written`` (a checkpoint's train state
    is committed, ``last`` not yet promoted), ``event_flushed`` (an event line is on disk). The
    target is the file name, or the event kind for ``event_flushed``.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1].isdigit():
        raise ValueError(
            f"{FAULT_ENV}={spec!r}: expected <point>[@<target>]:<N>[:<SIGNAL>] (a test-only hook)"
        )
    wanted, count = parts[0], int(parts[1])
    name, _, wanted_target = wanted.partition("@")
    if name != point or (wanted_target and wanted_target != target):
        return
    _fault_hits[spec] = _fault_hits.get(spec, 0) + 1
    if _fault_hits[spec] == count:
        os.kill(os.getpid(), getattr(signal, "SIG" + (parts[2] if len(parts) > 2 else "KILL")))


class WriteError(OSError):
    """A file could not be written (full disk, read-only folder, …); the previous file is kept."""


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[Path], None],
    before_replace: Callable[[], None] | None = None,
) -> Path:
    """Call ``write(tmp_path)`` on a temporary file ``.<name>.<pid>.<random>.tmp`` beside ``path``,
    fsync it, then ``os.replace`` it. Any failure removes the temporary file and leaves ``path``
    as it was; a failed write (an ``OSError``, or a serializer's own error on a full disk: torch's
    ``RuntimeError``, safetensors' ``SafetensorError``) is one ``WriteError`` naming the file.
    ``before_replace()`` runs last before the replace; what it raises passes unchanged."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as error:
        raise _write_error(path, error) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        fault_point("tmp_written", path.name)
    except BaseException as error:
        tmp_path.unlink(missing_ok=True)
        if isinstance(error, Exception) and not isinstance(error, WriteError | TypeError):
            raise _write_error(path, error) from None
        raise
    try:
        if before_replace is not None:
            before_replace()
        os.replace(tmp_path, path)
    except BaseException as error:
        tmp_path.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise _write_error(path, error) from None
        raise
    fault_point("renamed", path.name)
    return path


def _write_error(path: Path, error: BaseException) -> WriteError:
    """One line naming ``path``: the OS's reason, or (torch's serializer hides it) a guess."""
    code = getattr(error, "errno", None)
    reported = re.search(r"os error (\d+)", str(error))  # safetensors' (Rust) I/O errors
    if code is None and reported:
        code = int(reported.group(1))
    if code is None:
        try:
            code = errno.ENOSPC if os.statvfs(path.parent).f_bavail == 0 else None
        except OSError:
            code = None
    first_line = (str(error).splitlines() or [type(error).__name__])[0]
    reason = os.strerror(code) if code else f"the write failed ({first_line})"
    if code is None and "enforce fail" in str(error):
        reason = "the write failed (is the disk full or the file size limited?)"
    failure = WriteError(f"cannot write {path}: {reason}")
    failure.errno = code
    return failure


SAFETENSORS_TEMP = re.compile(r"\.tmp[A-Za-z0-9]{6}")
"""safetensors' own temporary file (``.tmpXXXXXX``, Rust's ``tempfile``) beside what ``save_file``
saves; this project writes safetensors' bytes itself (``write_safetensors``) and makes none."""
OWNED_TEMP = re.compile(r"\.(\d+)\.[a-z0-9_]{8}\.(?:tmp|staging|previous\.staging)$")
"""The end of a temporary name this code makes: ``.<pid>.<random>.tmp`` (or ``.staging``)."""


def write_safetensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    """``safetensors.torch.save_file`` without its own ``.tmpXXXXXX`` beside ``path`` (which a kill
    leaves behind): the bytes are serialized in memory and written here."""
    from safetensors.torch import save

    with open(path, "wb") as handle:
        handle.write(save(tensors, metadata=metadata))


def _owner_alive(name: str) -> bool:
    """Whether the process whose pid a temporary ``name`` carries still runs (False for a name
    without one: made by code before pids were recorded, or by safetensors)."""
    owned = OWNED_TEMP.search(name)
    if owned is None:
        return False
    pid = int(owned.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the ``.*.tmp`` files ``atomic_write`` left in ``folder`` (and its subfolders) and
    safetensors' own ``.tmpXXXXXX`` files in ``folder`` itself, when a process was killed
    mid-write; nothing else, and never a file whose writer still runs (its pid is in the name).
    Call only while holding the folder's lock."""
    folder = Path(folder)
    candidates = [*folder.rglob(".*.tmp")]
    candidates += [p for p in folder.glob(".tmp*") if SAFETENSORS_TEMP.fullmatch(p.name)]
    removed = []
    for tmp in candidates:
        if tmp.is_file() and not tmp.is_symlink() and not _owner_alive(tmp.name):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _folder_in_use(folder: Path) -> bool:
    """Whether a live process holds ``folder``'s run lock (``FolderLock``); nothing is created."""
    try:
        import fcntl

        descriptor = os.open(folder / FolderLock.NAME, os.O_RDONLY | os.O_NONBLOCK)
    except (ImportError, OSError):
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(descriptor)  # closing releases the lock just taken
    return False


def clean_stale_temp_files(target: str | os.PathLike) -> list[Path]:
    """Before ``project`` or ``import`` writes ``target``: remove the ``.<name>.*.tmp`` files a killed
    writer of ``target`` left beside it (never one whose writer still runs), and safetensors'
    ``.tmpXXXXXX`` files there unless the folder is a run folder in use (its trainer cleans its
    own). Returns what was removed."""
    target = Path(target)
    folder = target.parent
    in_use = _folder_in_use(folder)
    removed = []
    for tmp in folder.glob(f".{glob.escape(target.name)}.*.tmp"):
        if not tmp.is_file() or tmp.is_symlink() or _owner_alive(tmp.name):
            continue
        if in_use and OWNED_TEMP.search(tmp.name) is None:
            continue  # no pid in the name: it may be the running trainer's
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    if not in_use:
        for tmp in folder.glob(".tmp*"):
            if SAFETENSORS_TEMP.fullmatch(tmp.name) and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the C
    library or the file system has no such call."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange)
    return done == 0


def replace_folder(
    target: str | os.PathLike, write: Callable[[Path], list[Path]], replaceable: set[str]
) -> list[Path]:
    """Write a set of files as one: ``write(staging)`` fills a fresh folder
    ``.<name>.<pid>.<random>.staging`` beside ``target``, which then takes ``target``'s place (an
    atomic exchange where Linux offers it, else two renames), so ``target`` holds the whole new set
    or the whole previous one, never a mix. A ``target`` holding anything whose name is not in
    ``replaceable`` is refused before anything is written (it is not ours to replace); staging
    folders a killed writer left beside ``target`` are removed first, never those of a writer that
    still runs (its pid is in the name). Returns the files' final paths."""
    import shutil

    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder")
    foreign = (
        sorted(p.name for p in target.iterdir() if p.name not in replaceable)
        if (target.is_dir())
        else []
    )
    if foreign:
        raise ValueError(
            f"{target} holds files that are not an export ({', '.join(foreign[:3])}); choose an "
            "empty or new folder"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.staging"):
        if not _owner_alive(leftover.name):  # another export's live folder stays
            shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(
        tempfile.mkdtemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=".staging", dir=target.parent
        )
    )
    try:
        written = [target / path.name for path in write(staging)]
        os.chmod(staging, 0o777 & ~_umask())
        if not target.exists():
            os.rename(staging, target)
        elif _exchange(staging, target):
            shutil.rmtree(staging)  # now the previous set
        else:
            previous = staging.with_name(staging.name.replace(".staging", ".previous.staging"))
            os.rename(target, previous)
            os.rename(staging, target)
            shutil.rmtree(previous)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fault_point("renamed", target.name)
    return written


class NotRegularFileError(OSError):
    """A path that names a FIFO, a device, a socket or a folder where a file was expected."""


def open_regular(path: str | os.PathLike) -> io.BufferedReader:
    """``open(path, "rb")`` for a regular file only (symlinks to one are fine): the open itself does
    not block (``O_NONBLOCK``: a FIFO with no writer would otherwise wait forever), then ``fstat``
    refuses anything else with one ``NotRegularFileError`` naming the path."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotRegularFileError(f"{path} is not a regular file (a FIFO, device or folder)")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


class FolderInUseError(FileExistsError):
    """Another live process holds the run folder's lock."""


class FolderLock:
    """An exclusive ``fcntl.flock`` on ``<folder>/run.lock`` that holds the owner's PID.

    The kernel releases the lock when its process exits, however it exits (kill -9 included), so a
    lock file left by a dead process is stale and is simply taken over. Where ``fcntl`` does not
    exist (Windows) the lock is a no-op.
    """

    NAME = "run.lock"

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._handle: Any = None

    def acquire(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / self.NAME
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise FolderInUseError(
                f"{self.folder} is in use by a running training process (pid {owner}); "
                "wait for it to end, stop it, or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None


def load_plain_torch_file(path: str | os.PathLike, expected: str) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain values only, nothing executed.

    Any failure (empty, truncated, a pickle of other objects) is one ``ValueError`` naming the file
    and ``expected``; torch's own message is not shown (it suggests ``weights_only=False``, which
    would run the file's code).
    """
    import torch

    try:
        with warnings.catch_warnings():  # torch's warnings about a foreign pickle's protocol
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception:  # every failure of an untrusted file gets the same answer
        raise ValueError(
            f"{path} is not readable as {expected} (empty, truncated, or holding objects other "
            "than tensors and plain values, which are never unpickled)"
        ) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """``np.savez`` through a temporary file (never pickled: object arrays are refused)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buffer.getvalue())
