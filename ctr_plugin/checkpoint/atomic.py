"""Writing a checkpoint directory so that a failure at any moment leaves a checkpoint that loads.

A save writes every file into a staging folder ``.<name>.staging-XXXX`` beside the checkpoint,
then swaps it in with two renames: the previous checkpoint to ``.<name>.old``, the staging folder
to ``<name>``; then ``.<name>.old`` is removed. So:

* a writer that fails (a full disk, a permission, an interrupt, the safetensors writer's own
  error) leaves the previous checkpoint untouched; the staging folder is removed and the
  :class:`~ctr_plugin.errors.CheckpointError` says what is on disk;
* a failure between the two renames moves the previous checkpoint back; a crash there (power,
  kill) leaves it as ``.<name>.old``, which the next load or save moves back, with a message
  (:func:`restore_interrupted_save`);
* staging folders left by a crash (this release's ``.<name>.staging-*``, and the older
  ``.<name>.XXXXXXXX`` holding checkpoint files only) are removed by the next save, with a message.

Every file and folder of a checkpoint gets ordinary permissions, as the umask allows (0666 and
0777 less the umask), whatever mode its writer used (safetensors writes 0600).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ctr_plugin.errors import CheckpointError

log = logging.getLogger(__name__)

STAGING = "staging-"
# The staging folders of releases before this one: tempfile.mkdtemp's eight random characters.
_OLD_STAGING = re.compile(r"^[a-z0-9_]{8}$")
_CHECKPOINT_FILE = re.compile(
    r"^(plugins\.safetensors|ctr_config\.json|README\.md|tokenizer.*|special_tokens_map\.json|vocab.*|merges\.txt"
    r"|added_tokens\.json|.*\.model)$"
)
_DISK_FULL = re.compile(r"No space left|StorageFull|code: 28\b|os error 28\b|Disk quota", re.IGNORECASE)


def aside(directory: Path) -> Path:
    """Where a save keeps the previous checkpoint while it swaps in the new one."""
    return directory.parent / f".{directory.name}.old"


def _umask() -> int:
    """The process's umask: read from /proc where it can be (setting it to read it back, the only
    portable way, changes it for a moment for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def ordinary_mode(folder: bool = False) -> int:
    """The mode a file (0666) or folder (0777) gets under the process's umask."""
    return (0o777 if folder else 0o666) & ~_umask()


def restore_interrupted_save(directory: str | os.PathLike) -> bool:
    """Where ``directory`` is missing but ``.<name>.old`` beside it holds a checkpoint (a save was
    interrupted between its two renames), move it back, with a warning; True if it did. A
    CheckpointError names the command to restore it by hand when the move fails."""
    directory = Path(directory)
    old = aside(directory)
    if not directory.name or directory.exists() or directory.is_symlink() or not old.is_dir():
        return False
    try:
        os.replace(old, directory)
    except OSError as err:
        raise CheckpointError(
            f"The checkpoint {directory} is missing, but {old} holds it: a save was interrupted between its two "
            f"renames and left it under that hidden name. Moving it back failed ({type(err).__name__}: {err}); "
            f"move it back by hand: mv '{old}' '{directory}'"
        ) from None
    log.warning(
        "The checkpoint %s was missing: a save was interrupted between its two renames and left it as %s. "
        "Moved it back to %s.",
        directory,
        old,
        directory,
    )
    return True


def _leftover(directory: Path, path: Path) -> str | None:
    """Why ``path`` (beside ``directory``) is a leftover of an interrupted save, or None if it is not one."""
    rest = path.name[len(directory.name) + 2 :]
    if rest == "old" and directory.is_dir():
        return "a save that had already put the new checkpoint in place left this copy of the previous one"
    if path.is_symlink() or not path.is_dir():
        return None
    if rest.startswith(STAGING):
        return "the staging folder of a save that was interrupted"
    if _OLD_STAGING.match(rest):
        entries = list(path.iterdir())
        if all(e.is_file() and _CHECKPOINT_FILE.match(e.name) for e in entries):
            return "the staging folder of a save that was interrupted"
    return None


def remove_leftovers(directory: Path) -> None:
    """Remove what interrupted saves left beside ``directory``, saying so."""
    if not directory.parent.is_dir():
        return
    prefix = f".{directory.name}."
    for path in sorted(directory.parent.iterdir()):
        why = _leftover(directory, path) if path.name.startswith(prefix) else None
        if why is None:
            continue
        if _remove(path):
            log.warning("Removed %s: %s.", path, why)
        else:
            log.warning("Could not remove %s (%s); delete it by hand.", path, why)


def _remove(path: Path) -> bool:
    """Remove a folder (a link or a file: itself only); whether it is gone."""
    if path.is_symlink() or path.is_file():
        try:
            path.unlink()
        except OSError:
            return False
    else:
        shutil.rmtree(path, ignore_errors=True)
    return not path.exists() and not path.is_symlink()


def _hint(err: BaseException, parent: Path) -> str:
    number = getattr(err, "errno", None)
    if number in (errno.ENOSPC, errno.EDQUOT) or _DISK_FULL.search(str(err)):
        return f"Free disk space where {parent} lies, then save again."
    if isinstance(err, PermissionError) or number in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Make {parent} writable, then save again."
    return "Fix the cause, then save again."


def _failure(
    directory: Path, step: str, err: BaseException, existed: bool, staging: Path | None, old: Path | None
) -> CheckpointError:
    if old is not None:
        state = (
            f"the previous checkpoint could not be moved back and is intact under {old}: the next load or save "
            f"moves it back (or by hand: mv '{old}' '{directory}')"
        )
    elif existed:
        state = f"the previous checkpoint in {directory} is intact and unchanged"
    else:
        state = f"no checkpoint was written to {directory}"
    left = (
        f" Its staging folder {staging} could not be removed: delete it (the next save removes it too)."
        if staging is not None and staging.exists()
        else " The new checkpoint's partial files were removed."
    )
    reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return CheckpointError(
        f"Saving the checkpoint to {directory} failed while {step} ({reason}): {state}.{left} "
        f"{_hint(err, directory.parent)}"
    )


def save_directory(directory: str | os.PathLike, write: Callable[[Path, Callable[[str], None]], None]) -> None:
    """Write a checkpoint into ``directory`` atomically: ``write(staging, doing)`` writes its files
    into the staging folder, calling ``doing("writing <file>")`` before each step so that a failure
    can name it. A failure of any kind leaves the previous checkpoint loadable: an ``Exception``
    becomes a CheckpointError saying what is on disk; an interrupt (KeyboardInterrupt) propagates."""
    directory = Path(directory)
    steps = [f"creating {directory.parent}"]
    staging: Path | None = None
    existed = False
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        restore_interrupted_save(directory)
        remove_leftovers(directory)
        existed = directory.is_dir()
        steps.append("creating its staging folder")
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.{STAGING}", dir=directory.parent))
        write(staging, steps.append)
        steps.append("setting the files' permissions")
        for path in staging.rglob("*"):
            os.chmod(path, ordinary_mode(path.is_dir()))
        os.chmod(staging, ordinary_mode(True))  # mkdtemp makes it private (0700)
    except BaseException as err:
        if staging is not None:
            _remove(staging)
        if isinstance(err, CheckpointError) or not isinstance(err, Exception):
            raise
        raise _failure(directory, steps[-1], err, existed, staging, None) from err
    _swap(directory, staging, existed)


def _swap(directory: Path, staging: Path, existed: bool) -> None:
    """Put ``staging`` in the place of ``directory``; on a failure, the previous checkpoint back."""
    old = aside(directory)
    step, moved = "moving the previous checkpoint aside", False
    try:
        if existed:
            os.replace(directory, old)
            moved = True
        step = "moving the new checkpoint into place"
        os.replace(staging, directory)
    except BaseException as err:
        restored = not moved
        if moved:
            try:
                os.replace(old, directory)
                restored = True
            except BaseException:  # noqa: BLE001 - the message (or the next load) says where it is
                restored = False
        _remove(staging)
        if not isinstance(err, Exception):
            raise
        raise _failure(directory, step, err, existed, staging, None if restored else old) from err
    if not _remove(old):
        log.warning("Could not remove %s, the previous checkpoint's copy; the next save removes it.", old)
