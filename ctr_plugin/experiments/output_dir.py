"""The output directory of a run: checked before anything is written, and owned by one writer.

* :func:`check_output_dir` finds every problem with the directory (a file in its place, no write
  permission, a run already there, another process writing it, a continued run whose source
  checkpoint lies inside it) before data is loaded or anything is changed.
* :class:`OutputLock` is a lock file (``DIR/.lock`` holding the writer's pid, host and start),
  created atomically with its record in it: of writers started together exactly one gets it, a
  second writer is refused with the holder's pid, a lock whose process is gone is recognised as
  stale and taken over, and a lock file that cannot be read is reported, never removed.
* :func:`directory_state` and :func:`check_unchanged`: a run that took the lock checks that no
  other writer changed the directory since its checks saw it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from ctr_plugin.errors import CTRError
from ctr_plugin.reporting.results import RESULTS_FILE

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
COMMAND_FILE = "command.json"  # the options a run started with: what --resume reuses
LOCK_FILE = ".lock"
CHECKPOINT_CONFIG = "ctr_config.json"  # checkpoint.format.CONFIG_FILE, named here without importing torch


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc``); None elsewhere.
    With the pid it names one process: a pid reused by a later process has another start."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else None


def _damaged_lock(path: Path, why: str) -> CTRError:
    return CTRError(
        f"The lock file {path} cannot be read ({why}), so whether another process is writing {path.parent} is "
        f"unknown; it is never removed automatically. If no process is writing {path.parent}, delete it "
        f"(rm {path}) and run again."
    )


def read_lock(path: Path) -> dict | None:
    """The record in the lock file ``path`` (pid, host, start); None when there is none. A lock
    file that exists but cannot be read (empty, damaged, a directory) is a CTRError naming it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise _damaged_lock(path, getattr(err, "strerror", None) or str(err)) from None
    try:
        holder = json.loads(text)
        int(holder["pid"])
    except (ValueError, KeyError, TypeError):
        raise _damaged_lock(path, "empty" if not text.strip() else "not a lock record: no pid") from None
    return holder


def _alive(holder: dict) -> bool:
    """Whether the process a lock record names may still run (another host's cannot be probed)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = int(holder["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    recorded, now = holder.get("process_start"), _process_start(pid)
    return recorded is None or now is None or str(recorded) == now  # else: the pid was reused


def lock_holder(output_dir: Path) -> dict | None:
    """The live process holding ``output_dir``'s lock (its recorded pid, host, start), or None
    when there is no lock or it is stale (its process on this host is gone). A lock file that
    cannot be read is an error that names it: it is never taken for a stale one."""
    holder = read_lock(Path(output_dir) / LOCK_FILE)
    return holder if holder is not None and _alive(holder) else None


def _locked_error(output_dir: Path, holder: dict) -> CTRError:
    return CTRError(
        f"{output_dir} is being written by another training process (pid {holder.get('pid')} on "
        f"{holder.get('host')}, started {holder.get('started')}; lock file {output_dir / LOCK_FILE}). "
        f"Wait for it to finish, stop it, or choose another --output-dir. If that process is gone "
        f"(e.g. on another machine), delete the lock file."
    )


def check_output_dir(
    output_dir: str | os.PathLike,
    overwrite: bool,
    resume: bool = False,
    from_checkpoint: str | os.PathLike | None = None,
) -> None:
    """Refuse, before anything is loaded or written, an output directory the run cannot use.

    Checks, in order: a file where the directory should be; no permission to create or write it;
    another live process writing it; with ``resume``, that it exists; else a finished or started
    run in it without ``overwrite``; and a ``from_checkpoint`` inside it (the run would replace the
    checkpoint it starts from).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise CTRError(
            f"--output-dir {output_dir} is a file, not a directory. "
            "Choose a directory path (it is created if missing)."
        )
    base = _existing_ancestor(output_dir)
    if not base.is_dir():
        raise CTRError(
            f"--output-dir {output_dir} cannot be created: {base} is a file, not a directory. Choose another path."
        )
    if not os.access(base, os.W_OK | os.X_OK):
        what = "write to" if base == output_dir.absolute() else f"create {output_dir} in"
        raise CTRError(
            f"No permission to {what} {base} (read-only directory or file system). Choose an --output-dir "
            f"you can write, or change the permissions of {base}."
        )
    if output_dir.is_dir():
        holder = lock_holder(output_dir)
        if holder is not None:
            raise _locked_error(output_dir, holder)
    if resume:
        if not output_dir.is_dir():
            raise CTRError(f"Cannot resume: {output_dir} does not exist. Start the run without --resume.")
        return
    if (output_dir / RESULTS_FILE).exists() and not overwrite:
        raise CTRError(
            f"{output_dir} already holds a run ({RESULTS_FILE} exists). Choose another --output-dir, pass "
            f"--resume to continue it, or --overwrite to replace it."
        )
    if from_checkpoint is not None and output_dir.is_dir():
        source = Path(from_checkpoint).resolve()
        if source == output_dir.resolve() or output_dir.resolve() in source.parents:
            raise CTRError(
                f"--from-checkpoint {from_checkpoint} lies inside --output-dir {output_dir}: the new run would "
                f"replace the checkpoint it starts from. Write the continued run to another --output-dir."
            )


def directory_state(output_dir: str | os.PathLike) -> tuple:
    """What marks a run in ``output_dir`` (its results, recorded command, checkpoint), by file
    identity, size and time: taken before a run's checks and compared once it holds the lock
    (:func:`check_unchanged`), so that a writer that came and went meanwhile is noticed."""
    state = []
    for rel in (RESULTS_FILE, COMMAND_FILE, f"{CHECKPOINT_DIR}/{CHECKPOINT_CONFIG}"):
        try:
            st = (Path(output_dir) / rel).stat()
            state.append((rel, st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            state.append((rel, None))
    return tuple(state)


def check_unchanged(output_dir: str | os.PathLike, before: tuple) -> None:
    """Refuse to write ``output_dir`` if another process changed its run since ``before`` (the
    :func:`directory_state` this run's checks saw): two writers started together one after the other."""
    changed = [old[0] for old, new in zip(before, directory_state(output_dir)) if old != new]
    if changed:
        raise CTRError(
            f"{output_dir} changed while this command was checking and loading: another process wrote "
            f"{', '.join(changed)} there meanwhile (two runs were started on one --output-dir). This command wrote "
            f"nothing; look at what {output_dir} holds now, then run again (with --resume, --overwrite, or another "
            f"--output-dir)."
        )


class OutputLock:
    """``DIR/.lock`` while a run writes ``DIR``: refuses a second writer, takes over a stale lock.

    The lock appears atomically with its owner's record in it: the record (pid, host, start) is
    written to a private file first, which is then hard-linked to ``DIR/.lock`` (a link never
    replaces a file, so of writers that start together exactly one gets it, and nobody ever reads a
    lock file half written). A stale lock (its process, on this host, is gone) is taken over while
    holding ``flock`` on ``DIR`` itself, so that two writers cannot both take it over; a lock file
    that cannot be read is reported, never removed.

    Creates ``DIR`` if it is missing and, if nothing else was written there, removes it again on
    release, so that a run that fails before writing leaves no trace.
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_FILE
        self.created_dir = False
        self.held = False
        self._inode: int | None = None

    def _record(self) -> str:
        return json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "process_start": _process_start(os.getpid()),
            }
        )

    def acquire(self) -> OutputLock:
        try:
            for _ in range(5):  # the directory may vanish under us: a writer that made it removes it when done
                if not self.output_dir.is_dir():
                    try:
                        self.output_dir.mkdir(parents=True)
                        self.created_dir = True
                    except FileExistsError:
                        pass
                try:
                    return self._acquire_in_dir()
                except FileNotFoundError:
                    continue
            raise CTRError(f"Could not create the lock {self.path}: {self.output_dir} keeps disappearing.")
        except BaseException:
            self._remove_created_dir()
            raise

    def _acquire_in_dir(self) -> OutputLock:
        tmp = self.output_dir / f"{LOCK_FILE}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self._record())
                f.flush()
                os.fsync(f.fileno())
            if self._link(tmp):
                return self
            with _DirectoryGuard(self.output_dir):  # one process at a time judges and replaces a stale lock
                if self._link(tmp):
                    return self
                holder = read_lock(self.path)  # a damaged lock: an error naming it
                if holder is not None and _alive(holder):
                    raise _locked_error(self.output_dir, holder)
                if holder is not None:
                    log.warning(
                        "Removing the stale lock %s (its process, pid %s on %s, is gone).",
                        self.path,
                        holder.get("pid"),
                        holder.get("host"),
                    )
                    self.path.unlink(missing_ok=True)
                if self._link(tmp):
                    return self
            raise _locked_error(self.output_dir, lock_holder(self.output_dir) or {})
        finally:
            tmp.unlink(missing_ok=True)

    def _link(self, tmp: Path) -> bool:
        """Make ``tmp`` the lock, unless there is one (a hard link never replaces a file)."""
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        self._inode, self.held = tmp.stat().st_ino, True
        return True

    def release(self) -> None:
        if self.held:
            try:  # only our own lock: never one another process holds now
                if self.path.stat().st_ino == self._inode:
                    self.path.unlink()
            except FileNotFoundError:
                pass
            self.held = False
        self._remove_created_dir()

    def _remove_created_dir(self) -> None:
        if self.created_dir and self.output_dir.is_dir() and not any(self.output_dir.iterdir()):
            with contextlib.suppress(OSError):  # another writer put something there meanwhile
                self.output_dir.rmdir()

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class _DirectoryGuard:
    """``flock`` on a directory, for the moment a stale lock in it is judged and replaced. Where the
    file system has no such locks (some network file systems), nothing is held: best effort."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.fd: int | None = None

    def __enter__(self) -> _DirectoryGuard:
        try:
            import fcntl

            self.fd = os.open(self.directory, os.O_RDONLY)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except (ImportError, OSError):
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
