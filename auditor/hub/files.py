"""Downloads from the Hub at pinned commits, with the Hub's errors turned into actionable ones.

The Hub's errors become the model's `ModelFailed` or `ModelSkipped` through the table of
`auditor.hub.failures`; the token goes where `auditor.hub.token` says.

Everything here goes through huggingface_hub (`HfApi.repo_info`, `HfApi.list_repo_tree`,
`hf_hub_download`), so `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE` and the shared cache behave as
users expect, and every call is paced and retried as the crawler's are (`auditor.hub.backoff`): a 429
waits for the window the Hub's `RateLimit` header announces, a 5xx or a dropped connection is
tried again with backoff. Repo info (one request, no retry in the client) and a 5xx answer to a
file's GET are retried under `[hub]`'s `max_retries` and `backoff_s`; the tree's pages, a file's
HEAD, a download's 429s and its broken connections are retried by the client itself, with the same
rule (`http_backoff`) at its default counts (those of `[hub]`), and never again on top. What still
fails is a `ModelFailed` whose code is not permanent, so the model's audit row is tried again by a
later run (`AuditStore.pending_models`).

Files are fetched one exact path at a time (`hf_hub_download`), never through `snapshot_download`'s
`allow_patterns`: those are fnmatch patterns (huggingface_hub `utils/_paths.py`,
`filter_repo_objects`), so a file literally named `*.safetensors` would pull in every safetensors
file of the repo, subfolders included, past the size cap that counted one small file.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from auditor.config import HubSettings
from auditor.errors import ModelFailed
from auditor.hub.backoff import Backoff, call_with_backoff, origin_of
from auditor.hub.failures import HubCall, to_model_error
from auditor.hub.token import keep_token_on_hub, token_for


@dataclass(frozen=True)
class RepoFiles:
    repo_id: str
    sha: str
    #: path -> size in bytes
    files: dict[str, int]
    #: path -> the name huggingface_hub's cache gives the file's blob: the sha256 of a large (LFS)
    #: file, the git blob id of a small one (`hf_hub_download`'s docstring, "blobs ... identified by
    #: their git-sha or sha256"; the ETag the Hub answers for each).
    blob_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Files of a repo at one commit in huggingface_hub's cache, as transformers can load them."""

    #: `<cache>/<repo folder>/snapshots/<sha>`: one link per file, into the cache's blobs.
    folder: Path
    #: Bytes this download brought into the cache; files (or blobs) already there count 0.
    fetched_bytes: int


def list_repo_files(
    repo_id: str,
    revision: str | None,
    *,
    endpoint: str,
    repo_type: str = "model",
    hub: HubSettings | None = None,
) -> RepoFiles:
    """Resolve `revision` to a commit and list the files there with their sizes (two requests, each
    retried under `hub`'s backoff; the defaults of `[hub]` when None).

    >>> list_repo_files("gpt2", None, endpoint="https://huggingface.co").files["config.json"]  # doctest: +SKIP
    665
    """
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    keep_token_on_hub()
    settings = hub or HubSettings()
    backoff = Backoff.from_settings(settings)
    origin = origin_of(endpoint)
    api = HfApi(endpoint=endpoint, token=token_for(endpoint))
    call = HubCall("listing the files of", repo_type, repo_id, revision)
    try:
        info = call_with_backoff(
            functools.partial(
                api.repo_info, repo_id, revision=revision, repo_type=repo_type, timeout=settings.timeout_s
            ),
            backoff=backoff,
            origin=origin,
        )
        sha = info.sha
        if sha is None:
            raise ModelFailed(
                f"the Hub gave no commit for {call.repo}",
                hint="the Hub's answer is incomplete; a later run tries again (`auditor audit --pending`)",
                code="hub",
            )
        call = replace(call, revision=sha)
        tree = call_with_backoff(
            lambda: list(api.list_repo_tree(repo_id, revision=sha, recursive=True, repo_type=repo_type)),
            backoff=backoff,
            origin=origin,
            retried_inside=_retried_by_pager,
        )
    except Exception as err:
        failure = to_model_error(err, call, retries=backoff.max_retries)  # auditor.hub.failures' table
        if failure is None:
            raise
        raise failure from None
    files = [f for f in tree if isinstance(f, RepoFile)]
    return RepoFiles(
        repo_id=repo_id,
        sha=sha,
        files={f.path: int(f.size) for f in files},
        blob_ids={f.path: f.lfs.sha256 if f.lfs is not None else f.blob_id for f in files},
    )


def fetch_files(
    repo: RepoFiles,
    paths: list[str],
    *,
    endpoint: str,
    cache_dir: Path | None,
    repo_type: str = "model",
    hub: HubSettings | None = None,
) -> Snapshot:
    """Download exactly `paths` of `repo` at its pinned commit into the cache (`cache_dir`, or
    huggingface_hub's), one `hf_hub_download` per file, paced and retried (see the module's note).

    Any failure, a Xet download's included, is a `ModelFailed` with code `download` (or
    `ModelSkipped` `gated`, `ModelFailed` `missing`), which later runs retry; what came down
    before it stays in the cache for the next try. Programming errors and interruptions propagate
    (`auditor.hub.failures`, whose table says what becomes of each failure).

    >>> snapshot = fetch_files(listing, ["config.json"], endpoint=hub.url, cache_dir=None)  # doctest: +SKIP
    >>> (snapshot.folder / "config.json").exists(), snapshot.fetched_bytes
    (True, 665)
    """
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.file_download import repo_folder_name

    keep_token_on_hub()
    settings = hub or HubSettings()
    backoff = Backoff.from_settings(settings)
    cache = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    storage = cache / repo_folder_name(repo_id=repo.repo_id, repo_type=repo_type)
    folder = storage / "snapshots" / repo.sha
    fetched = 0
    for path in dict.fromkeys(paths):
        call = HubCall(f"downloading {path} of", repo_type, repo.repo_id, repo.sha)
        if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
            raise ModelFailed(
                f"{call.repo} lists a file outside the repo: {path!r}",
                hint="its file tree is malformed; nothing outside the cache was written",
                code="download",
            )
        if (folder / path).is_file():
            continue  # already in this snapshot (hf_hub_download would answer from the cache too)
        blob = repo.blob_ids.get(path)
        had_blob = blob is not None and (storage / "blobs" / blob).is_file()
        try:
            local = call_with_backoff(
                functools.partial(
                    hf_hub_download,
                    repo.repo_id,
                    path,
                    repo_type=repo_type,
                    revision=repo.sha,
                    cache_dir=str(cache),
                    endpoint=endpoint,
                    token=token_for(endpoint),
                    etag_timeout=settings.timeout_s,
                ),
                backoff=backoff,
                origin=origin_of(endpoint),
                bucket="resolvers",
                retried_inside=_retried_by_download,
            )
        except BaseException as err:
            # BaseException: a panic in hf_xet's Rust code is one (see auditor.hub.failures' table,
            # which lets our own errors, bugs and interruptions through).
            failure = to_model_error(err, call, download=True, retries=backoff.max_retries)
            if failure is None:
                raise
            raise failure from None
        if not had_blob:
            fetched += os.path.getsize(local)
    return Snapshot(folder, fetched)


def download(
    repo: RepoFiles,
    paths: list[str],
    *,
    endpoint: str,
    cache_dir: Path | None,
    repo_type: str = "model",
    hub: HubSettings | None = None,
) -> Path:
    """Download exactly `paths` of `repo` at its pinned commit; returns the snapshot folder
    (`fetch_files` also says how many bytes came down).

    >>> download(listing, ["prompts.jsonl"], endpoint=hub.url, cache_dir=None, repo_type="dataset")  # doctest: +SKIP
    PosixPath('.../datasets--allenai--real-toxicity-prompts/snapshots/<sha>')
    """
    return fetch_files(repo, paths, endpoint=endpoint, cache_dir=cache_dir, repo_type=repo_type, hub=hub).folder


def _retried_by_pager(error: BaseException) -> bool:
    """`list_repo_tree` fetches every page with `http_backoff` (utils/_pagination.py
    `_paginate_pages`): whatever failure reaches the caller was retried already."""
    return True


def _retried_by_download(error: BaseException) -> bool:
    """Whether `hf_hub_download` already retried `error` (huggingface_hub 2.4, file_download.py).

    It retries a file's HEAD with `http_backoff` (lines 1170-1190; what still fails arrives as
    `LocalEntryNotFoundError`), the Xet token route likewise (utils/_xet.py
    `_fetch_xet_connection_info_with_url`), and in `http_get` a GET's 408 and 429
    (`retry_on_status_codes=(408, 429)`, line 398) and its broken connections, resuming the body
    (lines 469-482). Not a 5xx answer to the GET: that one is ours to retry.
    """
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        try:
            request = error.response.request
        except RuntimeError:  # a response built without a request
            return False
        if request.method == "GET" and "/xet-read-token/" not in request.url.path:
            return error.response.status_code in (408, 429)
        return True
    return isinstance(error, (httpx2.ConnectError, httpx2.TimeoutException, httpx2.RemoteProtocolError))
