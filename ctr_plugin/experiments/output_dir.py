"""The output directory of a run: checked before anything is written, and owned by one writer.

* :func:`check_output_dir` finds every problem with the directory (a file in its place, no write
  permission, a run already there, another process writing it, a continued run whose source
  checkpoint lies inside it) before data is loaded or anything is changed.
* :class:`OutputLock` is a lock file (``DIR/.lock`` holding the writer's pid and host): a second
  writer is refused with the holder's pid, and a lock whose process is gone is recognised as stale
  and taken over.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from ctr_plugin.errors import CTRError
from ctr_plugin.reporting.results import RESULTS_FILE

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
COMMAND_FILE = "command.json"  # the options a run started with: what --resume reuses
LOCK_FILE = ".lock"


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def lock_holder(output_dir: Path) -> dict | None:
    """The live process holding ``output_dir``'s lock (its recorded pid, host, start), or None
    when there is no lock or it is stale (its process on this host is gone)."""
    try:
        holder = json.loads((output_dir / LOCK_FILE).read_text())
        pid = int(holder["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged lock file: treated as stale
    if holder.get("host") != socket.gethostname():
        return holder  # another machine's process: cannot be probed, so assumed alive
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return holder  # alive, owned by another user
    return holder


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


class OutputLock:
    """``DIR/.lock`` while a run writes ``DIR``: refuses a second writer, takes over a stale lock.

    Creates ``DIR`` if it is missing and, if nothing else was written there, removes it again on
    release, so that a run that fails before writing leaves no trace.
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_FILE
        self.created_dir = False
        self.held = False

    def acquire(self) -> OutputLock:
        if not self.output_dir.is_dir():
            self.output_dir.mkdir(parents=True)
            self.created_dir = True
        record = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        )
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = lock_holder(self.output_dir)
                if holder is not None:
                    self._remove_created_dir()
                    raise _locked_error(self.output_dir, holder) from None
                log.warning("Removing the stale lock %s (its process is gone).", self.path)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(record)
            self.held = True
            return self
        raise _locked_error(self.output_dir, lock_holder(self.output_dir) or {})

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
        self._remove_created_dir()

    def _remove_created_dir(self) -> None:
        if self.created_dir and self.output_dir.is_dir() and not any(self.output_dir.iterdir()):
            self.output_dir.rmdir()

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
