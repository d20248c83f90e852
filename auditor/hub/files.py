"""Downloads from the Hub at pinned commits, with the Hub's errors turned into actionable ones.

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
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from auditor.config import HubSettings
from auditor.errors import ModelError, ModelFailed, ModelSkipped
from auditor.hub.backoff import Backoff, add_client_hooks, call_with_backoff, origin_of

OFFICIAL_ENDPOINT = "https://huggingface.co"

#: Exceptions that are bugs (ours, or a library's after an upgrade), not a failed download: they
#: propagate, and the audit records them as `internal` with a logged traceback.
PROGRAMMING_ERRORS: tuple[type[Exception], ...] = (TypeError, AttributeError, NameError)
#: What stops the process rather than one download (a stop request is a KeyboardInterrupt).
INTERRUPTIONS: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit)
#: What passes through unchanged: the model's own errors, and bugs.
_PASS_THROUGH: tuple[type[Exception], ...] = (ModelError, *PROGRAMMING_ERRORS)


def token_for(endpoint: str) -> bool | None:
    """Whether the user's Hub token may go to `endpoint`.

    huggingface_hub sends the token to the official Hub or to whatever `HF_ENDPOINT` names; the
    auditor keeps that rule when its endpoint comes from a config file or a flag, so that a typo or
    a hostile config never ships the token to another host. Returns None (huggingface_hub finds the
    token itself) or False (send none).

    Past the endpoint, huggingface_hub keeps the token on the Hub. A file's `HEAD` follows
    redirects only to the same or another Hub host (`_httpx2_follow_hub_redirects_with_backoff`,
    utils/_http.py line 735, "the auth header must not leave the Hub"); when the file lives on a CDN
    the download drops `authorization` before fetching it (`_get_metadata_or_catch_error`,
    file_download.py line 1821; PRs huggingface/huggingface_hub#1269 and #1345), and httpx strips
    `Authorization` from any redirect to another origin (httpx `_client.py` `_redirect_headers`;
    encode/httpx#3334). Xet storage gets a short-lived Xet token instead (`xet_headers_without_auth`,
    utils/_xet.py line 316). tests/auditor/test_hub_calls.py pins the CDN case.
    """
    trusted = {OFFICIAL_ENDPOINT, os.environ.get("HF_ENDPOINT", "").rstrip("/")}
    return None if endpoint.rstrip("/") in trusted else False


def trusted_origins() -> set[str]:
    """The origins the user's token may go to: the official Hub's and `HF_ENDPOINT`'s."""
    return {origin_of(e) for e in (OFFICIAL_ENDPOINT, os.environ.get("HF_ENDPOINT", "")) if e}


def drop_foreign_token(request: Any) -> None:
    """A request hook: no `Authorization` header to an origin the token is not for.

    The Hub's answers name other URLs that huggingface_hub follows with the same headers, token
    included: a listing's `Link: <...>; rel="next"` (utils/_pagination.py `_paginate_pages`, which
    `HfApi.list_repo_tree` pages through) and a file's `Link rel="xet-auth"`. A hostile or broken
    answer could point them anywhere; this keeps the token on the Hub whatever they say. httpx2
    runs request hooks before every send, each redirect included (httpx `_client.py`, `_send_handling_redirects`).
    """
    if "authorization" in request.headers and origin_of(str(request.url)) not in trusted_origins():
        del request.headers["authorization"]


_guard_lock = threading.Lock()
_guarded = False


def refuse_foreign_xet_refresh(response: Any) -> None:
    """A response hook: refuse a Xet-backed file whose token-refresh URL is on an origin the token
    is not for, when the request carried the token.

    huggingface_hub hands hf_xet the refresh URL the Hub's answer names (`Link rel="xet-auth"`, else
    `X-Xet-Refresh-Route`: utils/_xet.py `parse_xet_file_data_from_response`) together with the
    request's headers, token included (file_download.py `xet_get`, `token_refresh_headers=headers`),
    and hf_xet refreshes from Rust, where no hook of ours sees the request. So the answer is refused
    before any of that starts; the download fails, and the audit is a `download` row.
    """
    if "authorization" not in response.request.headers:
        return
    route = (response.links.get("xet-auth") or {}).get("url") or response.headers.get("X-Xet-Refresh-Route")
    if not route or "://" not in route:  # absent, or a path on the origin that answered
        return
    if origin_of(route) not in trusted_origins():
        raise ModelFailed(
            f"the Hub's answer for {response.request.url.path} names a Xet token endpoint on another host"
            f" ({origin_of(route)}), which would receive the Hub token",
            hint="check HF_ENDPOINT; the file is not downloaded",
            code="download",
        )


def keep_token_on_hub() -> None:
    """Add `drop_foreign_token` and `refuse_foreign_xet_refresh` to huggingface_hub's shared HTTP
    client, once per process."""
    global _guarded
    with _guard_lock:
        if not _guarded:
            add_client_hooks(request=[drop_foreign_token], response=[refuse_foreign_xet_refresh])
            _guarded = True


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
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.hf_api import RepoFile

    keep_token_on_hub()
    settings = hub or HubSettings()
    backoff = Backoff.from_settings(settings)
    origin = origin_of(endpoint)
    api = HfApi(endpoint=endpoint, token=token_for(endpoint))
    what = f"{repo_type} {repo_id}" + (f" at {revision}" if revision else "")
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
            raise ModelFailed(f"the Hub gave no commit for {what}", code="hub")
        tree = call_with_backoff(
            lambda: list(api.list_repo_tree(repo_id, revision=sha, recursive=True, repo_type=repo_type)),
            backoff=backoff,
            origin=origin,
            retried_inside=_retried_by_pager,
        )
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
    except _PASS_THROUGH:
        raise
    except Exception as err:
        raise _hub_failed(f"listing {what}", err, backoff) from None
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
    before it stays in the cache for the next try. Programming errors (`PROGRAMMING_ERRORS`)
    propagate.

    >>> snapshot = fetch_files(listing, ["config.json"], endpoint=hub.url, cache_dir=None)  # doctest: +SKIP
    >>> (snapshot.folder / "config.json").exists(), snapshot.fetched_bytes
    (True, 665)
    """
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.file_download import repo_folder_name

    keep_token_on_hub()
    settings = hub or HubSettings()
    backoff = Backoff.from_settings(settings)
    cache = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    storage = cache / repo_folder_name(repo_id=repo.repo_id, repo_type=repo_type)
    folder = storage / "snapshots" / repo.sha
    where = f"{repo.repo_id}@{repo.sha[:12]}"
    fetched = 0
    for path in dict.fromkeys(paths):
        if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
            raise ModelFailed(f"{where} lists a file outside the repo: {path!r}", code="download")
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
        except GatedRepoError:
            raise _gated(repo.repo_id) from None
        except (RepositoryNotFoundError, RevisionNotFoundError):
            raise ModelFailed(
                f"{where} is gone from the Hub (repo or commit) since it was listed",
                hint="a later crawl records the change",
                code="missing",
            ) from None
        except (*_PASS_THROUGH, *INTERRUPTIONS):
            raise
        except BaseException as err:
            # hf_xet's failures are RuntimeErrors, not HfHubHTTPError or OSError; a panic in its Rust
            # code is PyO3's PanicException, which derives from BaseException "so that it will
            # typically propagate all the way" (docs.rs/pyo3, pyo3::panic::PanicException).
            raise ModelFailed(
                f"downloading {path} of {where} failed: {_describe(err)}",
                hint="try again later (`audit --pending` does); a persistent failure means the repo is broken",
                code="download",
            ) from None
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


def _hub_failed(doing: str, err: Exception, backoff: Backoff) -> ModelFailed:
    from auditor.hub.backoff import transient_failure

    failure = transient_failure(err)
    status = failure.status if failure is not None else None
    if status == 429:
        return ModelFailed(
            f"the Hub kept rate-limiting {doing} (HTTP 429, retried up to {backoff.max_retries} times)",
            hint="a later run tries again; a token (HF_TOKEN) has a larger quota",
            code="rate_limited",
        )
    return ModelFailed(
        f"the Hub failed {doing}" + (" even after retries" if failure is not None else "") + f": {_describe(err)}",
        hint="try again later (`audit --pending` does)",
        code="hub",
    )


def _describe(err: BaseException) -> str:
    """`Type: message`, and what caused it (the client wraps a failed HEAD in LocalEntryNotFoundError)."""
    from auditor.textsafety import strip_control

    text = f"{type(err).__name__}: {err}"
    if err.__cause__ is not None:
        text += f" (because of {type(err.__cause__).__name__}: {err.__cause__})"
    return strip_control(text)[:400]


def _gated(repo_id: str) -> ModelSkipped:
    return ModelSkipped(
        f"{repo_id} is gated and this token has no access to its files",
        hint=f"accept its licence on the Hub page of {repo_id} with the account of HF_TOKEN, then audit again",
        code="gated",
    )
