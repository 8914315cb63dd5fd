"""Checkpoints on the Hugging Face Hub: a repo id read as its local snapshot, and a checkpoint
uploaded as a model repo. Only the checkpoint's files travel; the frozen encoder is referenced by
name, never uploaded."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ctr_plugin.data.packages import hub_offline
from ctr_plugin.errors import CheckpointError

if TYPE_CHECKING:
    from ctr_plugin.modeling.model import ContinualModel


def is_repo_id(name: str) -> bool:
    """Whether ``name`` can only be a Hub repo id (``owner/name`` or ``name``), not a local path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith((".", "/", "~")) or os.sep in name.replace("/", "") or name.count("/") > 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def checkpoint_directory(
    directory_or_repo_id: str | os.PathLike,
    revision: str | None,
    token: str | bool | None,
    cache_dir: str | os.PathLike | None,
) -> Path:
    """A local directory as it is; a Hub repo id as the local snapshot ``huggingface_hub`` keeps
    (downloaded, or read from the cache when offline)."""
    if Path(directory_or_repo_id).is_dir() or not is_repo_id(str(directory_or_repo_id)):
        return Path(directory_or_repo_id)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return Path(snapshot_download(str(directory_or_repo_id), revision=revision, token=token, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as err:
        hint = (
            "HF_HUB_OFFLINE=1 is set and the repo is not in the hub cache: download it once with network access"
            if hub_offline()
            else "check the repo id, its revision and your access to it (a private repo needs a token)"
        )
        raise CheckpointError(
            f"{str(directory_or_repo_id)!r} is neither a local checkpoint directory nor a Hub repo this machine could "
            f"fetch ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); {hint}."
        ) from None


def push_to_hub(
    model: ContinualModel,
    repo_id: str,
    extra: dict | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload ctr_plugin checkpoint",
    create_pr: bool = False,
):
    """Save ``model``'s checkpoint (``save_pretrained``, model card included) and upload it to the
    model repo ``repo_id`` (created if missing) through ``huggingface_hub.HfApi``; returns the
    commit info."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "checkpoint"
        model.save_pretrained(folder, extra=extra)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            revision=revision,
            commit_message=commit_message,
            create_pr=create_pr,
        )
