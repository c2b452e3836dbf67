"""The one way reasonry writes a file: into a temp file beside the target, fsync, then rename over it.

A reader never sees a half-written file and a failure leaves the target as it was. Temp files are named
`.NAME.tmp-PID-XXXXXXXX`; ones left behind by a killed process (its PID no longer running) are removed
the next time the same target is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from reasonry.errors import InputError

T = TypeVar("T")

_PROCESS_START = time.time()
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.tmp-(?:(?P<pid>\d+)-)?[0-9a-f]{8}(?:-[0-9a-f]+)?")


def temp_name(out: Path) -> Path:
    """A fresh temp path beside `out` (not created)."""
    return out.with_name(f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, label: str | None = None) -> Iterator[Path]:
    """Yield a temp path to write; on success it is fsynced and renamed onto `path`, on failure removed."""
    out = Path(path)
    label = label or str(path)
    remove_stale_temps(out)
    temp = _create(out, label)
    try:
        yield temp
        _fsync_file(temp)
        _replace(temp, out, label)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)


def atomic_write(path: str | Path, write: Callable[[Path], T], *, label: str | None = None) -> T:
    """Run `write(temp)` and put the result in place atomically; returns what `write` returned."""
    with atomic_path(path, label=label) as temp:
        return write(temp)


@contextlib.contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """Yield an empty folder beside `out` to build in; on success it replaces `out` whole (an earlier one
    included), on failure it is removed and `out` is left as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        yield built
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(built, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(built, ignore_errors=True)


def write_text(path: str | Path, text: str, *, label: str | None = None) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"), label=label)
    return Path(path)


def remove_stale_temps(out: Path) -> list[Path]:
    """Delete temp files of `out` left by processes that no longer run; returns what was removed."""
    removed: list[Path] = []
    try:
        candidates = list(out.parent.glob(f".{_glob_escape(out.name)}.tmp-*"))
    except OSError:
        return removed
    for candidate in candidates:
        match = _TEMP_NAME.fullmatch(candidate.name)
        if match is None or match["target"] != out.name or not _is_stale(candidate, match["pid"]):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def _is_stale(candidate: Path, pid: str | None) -> bool:
    if pid is None:  # an older name without the writer's PID: stale if it predates this process
        try:
            return candidate.stat().st_mtime < _PROCESS_START
        except OSError:
            return False
    return int(pid) != os.getpid() and not _running(int(pid))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _create(out: Path, label: str) -> Path:
    while True:
        temp = temp_name(out)
        try:
            os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return temp
        except FileExistsError:
            continue
        except OSError as error:
            raise InputError(f"{label}: cannot write in folder '{out.parent}' ({error.strerror})") from None


def _replace(temp: Path, out: Path, label: str) -> None:
    try:
        os.replace(temp, out)
    except OSError as error:
        raise InputError(
            f"{label}: cannot replace the file ({error.strerror}); is it open in another program?"
        ) from None


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
