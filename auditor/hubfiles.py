"""Downloads from the Hub at pinned commits, with the Hub's errors turned into actionable ones.

Everything here goes through huggingface_hub (`HfApi`, `snapshot_download`), so `HF_ENDPOINT`,
`HF_TOKEN`, `HF_HUB_OFFLINE` and the shared cache behave as users expect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from auditor.errors import ModelFailed, ModelSkipped

OFFICIAL_ENDPOINT = "https://huggingface.co"


def token_for(endpoint: str) -> bool | None:
    """Whether the user's Hub token may go to `endpoint`.

    huggingface_hub sends the token to the official Hub or to whatever `HF_ENDPOINT` names; the
    auditor keeps that rule when its endpoint comes from a config file or a flag, so that a typo or
    a hostile config never ships the token to another host. Returns None (huggingface_hub finds the
    token itself) or False (send none).
    """
    trusted = {OFFICIAL_ENDPOINT, os.environ.get("HF_ENDPOINT", "").rstrip("/")}
    return None if endpoint.rstrip("/") in trusted else False


@dataclass(frozen=True)
class RepoFiles:
    repo_id: str
    sha: str
    #: path -> size in bytes
    files: dict[str, int]


def list_repo_files(repo_id: str, revision: str | None, *, endpoint: str, repo_type: str = "model") -> RepoFiles:
    """Resolve `revision` to a commit and list the files there with their sizes (two requests)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=endpoint, token=token_for(endpoint))
    what = f"{repo_type} {repo_id}" + (f" at {revision}" if revision else "")
    try:
        info = api.repo_info(repo_id, revision=revision, repo_type=repo_type)
        sha = info.sha
        if sha is None:
            raise ModelFailed(f"the Hub gave no commit for {what}", code="hub")
        files = {
            f.path: int(f.size)
            for f in api.list_repo_tree(repo_id, revision=sha, recursive=True, repo_type=repo_type)
            if isinstance(f, RepoFile)
        }
    except GatedRepoError:
        raise _gated(repo_id) from None
    except RevisionNotFoundError:
        raise ModelFailed(
            f"revision {revision} of {repo_id} does not exist",
            hint="check the commit sha; it may have been force-pushed away",
            code="missing",
        ) from None
    except RepositoryNotFoundError:
        raise ModelFailed(
            f"{what} does not exist on the Hub (or is private)",
            hint="check the id; a deleted model is marked at the next crawl",
            code="missing",
        ) from None
    except HfHubHTTPError as err:
        raise ModelFailed(f"the Hub failed listing {what}: {err}", hint="try again later", code="hub") from None
    return RepoFiles(repo_id=repo_id, sha=sha, files=files)


def download(
    repo: RepoFiles, paths: list[str], *, endpoint: str, cache_dir: Path | None, repo_type: str = "model"
) -> Path:
    """Download exactly `paths` of `repo` at its pinned commit; returns the snapshot folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    try:
        folder = snapshot_download(
            repo.repo_id,
            revision=repo.sha,
            repo_type=repo_type,
            allow_patterns=paths,
            cache_dir=str(cache_dir) if cache_dir else None,
            endpoint=endpoint,
            token=token_for(endpoint),
        )
    except GatedRepoError:
        raise _gated(repo.repo_id) from None
    except (HfHubHTTPError, OSError) as err:
        raise ModelFailed(
            f"downloading {repo.repo_id}@{repo.sha[:12]} failed: {err}",
            hint="try again later; a persistent failure means the repo is broken",
            code="download",
        ) from None
    return Path(folder)


def _gated(repo_id: str) -> ModelSkipped:
    return ModelSkipped(
        f"{repo_id} is gated and this token has no access to its files",
        hint=f"accept its licence on the Hub page of {repo_id} with the account of HF_TOKEN, then audit again",
        code="gated",
    )
