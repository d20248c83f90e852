"""The simulated Hub's HTTP server: the parts of the Hub API the auditor uses, as the Hub serves them.

The real `huggingface_hub` client talks to it unchanged through `HF_ENDPOINT`. It serves:

    GET  /api/models                          filter (ANDed), search, author, sort, limit, cursor, expand,
                                              full, cardData, config; pages of at most 1000 in the Hub's
                                              keyset order, with `Link: <...>; rel="next"` (see listing.py)
    GET  /api/models/{id}[/revision/{rev}]    one model (all fields, or `expand`)
    GET  /api/models/{id}/tree/{rev}[/{path}] the file listing (`recursive=true`)
    HEAD|GET /{id}/resolve/{rev}/{path}       file bytes with ETag, X-Repo-Commit, X-Linked-* headers
    GET  /api/models/{id}/xet-read-token/{rev} a Xet access token, for files a `xet` fault marks as
                                              stored with Xet (whose storage the sim refuses)
    ... and the same under /api/datasets and /datasets for dataset repos.

It is at least as strict as the Hub wherever the Hub's behaviour is known (each fact is pinned, with
its source, in tests/auditor/simhub/test_hub_facts.py):

- `expand` takes only the values the route accepts on the Hub (`LISTING_EXPAND`, `DETAIL_EXPAND`);
  one other value answers 400 to the whole request. Accepted values the sim has no data for are
  omitted from the answer, as the Hub omits absent fields. `sort` takes the Hub's five keys; `limit`
  above 1000 is served as 1000, below 1 or not a number is a 400.
- A renamed model's old id answers `307` with `Location` on the same path under the new id (detail,
  revision, tree and resolve routes; the query string is kept); the old id is no longer listed.
- Gated repos serve metadata to anyone and files only to tokens whose owner accepted the licence
  (401 without a token, 403 with one that did not). Unknown and deleted repos answer 401 without a
  token and 404 with one, with the `X-Error-Code` headers the client turns into typed errors.
- Every response outside `/_sim/` carries `RateLimit` and `RateLimit-Policy` for its bucket (see
  ratelimit.py); a spent window answers 429 without `Retry-After`.

Test-only endpoints live under `/_sim/`, are never counted and carry no rate-limit headers:
`GET /_sim/stats`, `POST /_sim/stats/reset`, `POST /_sim/faults` (a JSON list of fault rules),
`POST /_sim/evolve` (`{"fraction": 0.01, "seed": 1}`), `GET /_sim/truth`, `GET /_sim/ratelimit`.
`/_sim/xet-cas/...` is the Xet storage of `xet` faults: it answers 404 to everything. The stats
count requests by route and status, body bytes sent by route (`bytes:resolve`), and requests that
carried an `Authorization` header (`authorization`).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from auditor.lineage import RELATIONS
from auditor.simhub.faults import FaultPlan, FaultRule, RequestStats
from auditor.simhub.listing import PAGE_MAX, SORT_KEYS, Keyset, ListingIndex, trending_score
from auditor.simhub.ratelimit import DEFAULT_RATE_LIMIT, FixedWindows, bucket_of, ratelimit_header
from auditor.simhub.world import SimFile, SimRepo, World, generated_files, object_id

# The `expand` values each route accepts; one value outside them makes the Hub answer 400 to the whole
# request. The listing's are those of the installed client's `list_models` docstring (huggingface_hub
# 2.4.0, hf_api.py line 2380); the detail route's are `model_info`'s (hf_api.py line 3179), which adds
# three: huggingface_hub PR #3182 (https://github.com/huggingface/huggingface_hub/pull/3182) removed
# `baseModels`, `childrenModelCount` and `usedStorage` from list_models "because they are only accepted
# when using the /api/models/repo_id endpoint" (the maintainers cite the Hub's listing-route code).
LISTING_EXPAND: frozenset[str] = frozenset(
    (
        "author",
        "cardData",
        "config",
        "createdAt",
        "disabled",
        "downloads",
        "downloadsAllTime",
        "evalResults",
        "gated",
        "gguf",
        "inference",
        "inferenceProviderMapping",
        "lastModified",
        "library_name",
        "likes",
        "mask_token",
        "model-index",
        "pipeline_tag",
        "private",
        "safetensors",
        "sha",
        "siblings",
        "spaces",
        "tags",
        "transformersInfo",
        "trendingScore",
        "widgetData",
        "resourceGroup",
    )
)
DETAIL_EXPAND: frozenset[str] = LISTING_EXPAND | {"baseModels", "childrenModelCount", "usedStorage"}

LIST_DEFAULT_FIELDS = (
    "_id",
    "id",
    "modelId",
    "likes",
    "downloads",
    "private",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
)
_LIST_FULL_FIELDS = (
    *LIST_DEFAULT_FIELDS,
    "author",
    "sha",
    "lastModified",
    "gated",
    "disabled",
    "siblings",
    "cardData",
    "trendingScore",
)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubView:
    """Renders the world as Hub JSON; `listings` orders and pages it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.listings = ListingIndex(world)

    def model_json(
        self, repo: SimRepo, fields: Iterable[str] | None, sha: str | None = None, *, blobs: bool = False
    ) -> dict[str, Any]:
        """One model as the Hub describes it; `fields=None` means every field; `blobs` adds file sizes."""
        world = self.world
        sha = sha or repo.sha
        wanted = None if fields is None else set(fields)

        def want(name: str) -> bool:
            return wanted is None or name in wanted

        out: dict[str, Any] = {"_id": repo.object_id, "id": repo.repo_id}
        if wanted is None or "modelId" in wanted:
            out["modelId"] = repo.repo_id
        if want("author"):
            out["author"] = repo.author
        if want("sha"):
            out["sha"] = sha
        if want("lastModified"):
            out["lastModified"] = _iso(repo.last_modified)
        if want("createdAt"):
            out["createdAt"] = _iso(repo.created_at)
        if want("private"):
            out["private"] = False
        if want("disabled"):
            out["disabled"] = False
        if want("gated"):
            out["gated"] = repo.gated
        if want("downloads"):
            out["downloads"] = repo.downloads
        if want("downloadsAllTime"):
            out["downloadsAllTime"] = repo.downloads * 7
        if want("likes"):
            out["likes"] = repo.likes
        if want("trendingScore"):
            out["trendingScore"] = trending_score(repo)
        if want("library_name") and repo.library_name:
            out["library_name"] = repo.library_name
        if want("pipeline_tag") and repo.pipeline_tag:
            out["pipeline_tag"] = repo.pipeline_tag
        if want("tags"):
            out["tags"] = list(world.tags(repo.repo_id)) if repo.repo_type == "model" else []
        if want("cardData"):
            card: dict[str, Any] = {}
            if repo.declared:
                card["base_model"] = repo.declared[0] if len(repo.declared) == 1 else list(repo.declared)
                card["base_model_relation"] = repo.relation
            if repo.license:
                card["license"] = repo.license
            if repo.library_name:
                card["library_name"] = repo.library_name
            out["cardData"] = card
        if want("baseModels") and repo.declared and repo.relation:
            out["baseModels"] = {
                "relation": repo.relation,
                "models": [{"_id": self._declared_oid(p), "id": p} for p in repo.declared],
            }
        if want("childrenModelCount"):
            out["childrenModelCount"] = world.children_count(repo.repo_id)
        if want("safetensors") and repo.num_parameters:
            out["safetensors"] = {"parameters": {"BF16": repo.num_parameters}, "total": repo.num_parameters}
        if want("config"):
            config_file = generated_files(world, repo, sha).get("config.json")
            if config_file is not None:
                try:
                    out["config"] = json.loads(config_file.content)
                except ValueError:
                    out["config"] = {}
        if want("siblings"):
            out["siblings"] = _siblings(generated_files(world, repo, sha), blobs=blobs)
        if want("spaces"):
            out["spaces"] = []
        if want("usedStorage"):
            out["usedStorage"] = sum(len(f.content) for f in generated_files(world, repo, sha).values())
        return out

    def dataset_json(self, repo: SimRepo, sha: str | None = None) -> dict[str, Any]:
        sha = sha or repo.sha
        return {
            "_id": object_id("datasets/" + repo.repo_id),
            "id": repo.repo_id,
            "author": repo.author,
            "sha": sha,
            "lastModified": _iso(repo.last_modified),
            "createdAt": _iso(repo.created_at),
            "private": False,
            "gated": repo.gated,
            "disabled": False,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "tags": [],
            "cardData": {"license": repo.license} if repo.license else {},
            "siblings": [{"rfilename": path} for path in sorted(generated_files(self.world, repo, sha))],
        }

    def _declared_oid(self, repo_id: str) -> str:
        """The `_id` of a declared parent: the model's own when it exists (under that id or renamed)."""
        repo = self.world.model(self.world.redirect(repo_id) or repo_id)
        return repo.object_id if repo is not None else object_id(repo_id)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    #: Set per request: whether a `xet` fault marks this file answer as stored with Xet.
    _xet = False

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and delayed
        # ACKs add 40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- plumbing -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_POST(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, *, head: bool) -> None:
        hub = self.server.hub
        url = urlsplit(self.path)
        path = url.path
        # Set per request: a keep-alive connection reuses this handler.
        self._limit_headers: dict[str, str] = {}
        if path.startswith("/_sim/xet-cas/"):
            # The Xet storage of `xet` faults: hf_xet gives up at once on a 404 (it retries
            # connection errors for minutes), and fails with a RuntimeError.
            self._error(404, "NotFound", "the simulated Hub stores nothing with Xet")
            return
        if path.startswith("/_sim/"):
            self._admin(path)
            return
        route = _route_name(path)
        if self.headers.get("Authorization"):
            hub.stats.note("authorization")
        window = hub.limiter.take(bucket_of(path))
        self._limit_headers = window.headers()
        if not window.admitted:
            hub.stats.add(route, 429)
            self._error(429, "RateLimited", f"Rate limit of the {window.bucket!r} bucket reached for this window.")
            return
        rule = hub.faults.pick(path, unquote(url.query), route=route, method=self.command)
        if rule is not None and rule.kind == "slow":
            time.sleep(rule.delay_s)
            rule = None
        if rule is not None and rule.kind == "drop":
            hub.stats.add(route, "dropped")
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if rule is not None and rule.kind == "rate_limit":
            hub.stats.add(route, 429)
            self._limit_headers["RateLimit"] = ratelimit_header(window.bucket, 0, rule.retry_after)
            self._error(429, "RateLimited", "You have been rate-limited; retry later.")
            return
        if rule is not None and rule.kind == "server":
            hub.stats.add(route, rule.status)
            self._error(rule.status, "InternalError", "Simulated server error")
            return
        self._xet = rule is not None and rule.kind == "xet"
        #: Where the `xet-auth` link of a `xet` fault points: the rule's `location`, else this Hub.
        self._xet_origin = (rule.location if rule is not None and rule.location else "") or self.server.hub.url
        try:
            status, body, headers = self._handle(path, parse_qs(url.query, keep_blank_values=True), head=head)
        except _HubError as err:
            hub.stats.add(route, err.status)
            self._error(err.status, err.code, err.message)
            return
        except _Moved as moved:
            hub.stats.add(route, 307)
            location = moved.path + (f"?{url.query}" if url.query else "")
            self._send(307, b"", {"Location": location}, head=head)
            return
        if rule is not None and rule.kind == "redirect" and route == "resolve" and status in (200, 206):
            # The Hub's answer for a file on a CDN: a 302 carrying the file's headers (huggingface_hub
            # reads X-Linked-Size and X-Linked-Etag from it, file_download.py `get_hf_file_metadata`).
            hub.stats.add(route, 302)
            kept = {k: v for k, v in headers.items() if k not in ("Content-Length", "Content-Range", "Accept-Ranges")}
            location = rule.location.rstrip("/") + path + (f"?{url.query}" if url.query else "")
            self._send(302, b"", {**kept, "Location": location}, head=head)
            return
        hub.stats.add(route, status)
        cut = rule.kind if rule is not None and rule.kind in ("truncate", "short") else None
        sent = self._send(status, body, headers, head=head, cut=cut)
        hub.stats.add_bytes(route, sent)

    def _send(
        self, status: int, body: bytes, headers: dict[str, str], *, head: bool = False, cut: str | None = None
    ) -> int:
        """Send one answer; `cut` (`truncate` or `short`) sends half the body. Returns the body bytes sent."""
        self.send_response(status)
        for name, value in {**headers, **self._limit_headers}.items():
            if cut == "short" and name == "Content-Length":
                continue  # the body ends when the connection closes (RFC 9112 section 6.3)
            self.send_header(name, value)
        if "Content-Length" not in headers and cut != "short":
            self.send_header("Content-Length", str(len(body)))
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return 0
        if cut is not None:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return len(body) // 2
        self.wfile.write(body)
        return len(body)

    def _json(self, data: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        body = json.dumps(data, separators=(",", ":")).encode()
        return 200, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Error-Code": code, "X-Error-Message": message}
        self._send(status, body, headers, head=self.command == "HEAD")

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    # -- routes ---------------------------------------------------------------------------------

    def _handle(self, path: str, query: dict[str, list[str]], *, head: bool) -> tuple[int, bytes, dict[str, str]]:
        if path in ("/api/models", "/api/datasets"):
            return self._list(path, query)
        for prefix, repo_type in (("/api/models/", "model"), ("/api/datasets/", "dataset")):
            if path.startswith(prefix):
                return self._api_repo(repo_type, path[len(prefix) :], query)
        if path.startswith("/datasets/"):
            return self._resolve("dataset", path[len("/datasets/") :], head=head)
        return self._resolve("model", path[1:], head=head)

    def _list(self, path: str, query: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        view = self.server.hub.view
        world = view.world
        if path == "/api/datasets":
            data = [view.dataset_json(d) for d in world.datasets.values()]
            return self._json(data)
        expand = _expand(query, LISTING_EXPAND)
        if expand and any(_flag(query, name) for name in ("full", "cardData", "config")):
            # The client refuses the mix ("`expand` cannot be used if `full`, `cardData` or
            # `fetch_config` are passed", hf_api.py line 2430); what the Hub does is undocumented, so
            # the stricter answer.
            raise _HubError(400, "BadRequest", '"expand" cannot be combined with "full", "cardData" or "config"')
        sort = query.get("sort", [None])[0]
        if sort is not None and sort not in SORT_KEYS:
            raise _HubError(400, "BadRequest", f'"sort" must be one of [{", ".join(SORT_KEYS)}]')
        limit = _limit(query.get("limit", [str(PAGE_MAX)])[0])
        cursor = query.get("cursor", [None])[0]
        try:
            after = Keyset.decode(cursor) if cursor else None
        except ValueError as err:
            raise _HubError(400, "BadRequest", str(err)) from None
        filters = tuple(sorted(set(query.get("filter", []))))
        listing = view.listings.listing(filters, query.get("author", [None])[0], query.get("search", [None])[0], sort)
        page, following = listing.page(after, limit)
        fields: Iterable[str]
        if expand:
            fields = expand
        elif _flag(query, "full"):
            fields = _LIST_FULL_FIELDS
        else:
            fields = LIST_DEFAULT_FIELDS
        fields = (*fields, *(name for name in ("cardData", "config") if _flag(query, name)))
        data = []
        for repo_id in page:
            repo = world.model(repo_id)
            if repo is not None:
                data.append(view.model_json(repo, fields))
        headers = {}
        if following is not None:
            params = [(k, v) for k, values in query.items() if k != "cursor" for v in values]
            params.append(("cursor", following.encode()))
            host = self.headers.get("Host", f"127.0.0.1:{self.server.server_port}")
            origin = self.server.hub.link_origin or f"http://{host}"
            headers["Link"] = f'<{origin}{path}?{urlencode(params)}>; rel="next"'
        return self._json(data, headers)

    def _repo(self, repo_type: str, repo_id: str) -> SimRepo:
        world = self.server.hub.view.world
        repo = world.model(repo_id) if repo_type == "model" else world.datasets.get(repo_id)
        if repo is None:
            status = 404 if self._token() else 401
            raise _HubError(status, "RepoNotFound", "Repository not found")
        return repo

    def _revision(self, repo: SimRepo, rev: str) -> str:
        rev = unquote(rev)
        if rev == "main":
            return repo.sha
        if rev in repo.commits:
            return rev
        raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")

    def _split_repo(self, repo_type: str, rest: str, markers: tuple[str, ...]) -> tuple[str, list[str]]:
        """Split `owner/name/...`, or a legacy owner-less `name/...`, into (repo id, the rest)."""
        parts = rest.split("/")
        world = self.server.hub.view.world
        repos = world.models if repo_type == "model" else world.datasets

        def known(repo_id: str) -> bool:
            return repo_id in repos or (repo_type == "model" and repo_id in world.redirects)

        two = "/".join(parts[:2])
        if len(parts) >= 2 and known(two):
            return two, parts[2:]
        if known(parts[0]) or (len(parts) >= 2 and parts[1] in markers):
            return parts[0], parts[1:]
        return two, parts[2:]

    def _follow_rename(self, repo_type: str, repo_id: str, prefix: str, tail: list[str]) -> None:
        """Answer 307 to the same path under the new id when `repo_id` is a renamed model's old id."""
        if repo_type != "model":
            return
        new_id = self.server.hub.view.world.redirect(repo_id)
        if new_id is not None:
            raise _Moved(prefix + "/".join([new_id, *tail]))

    def _api_repo(self, repo_type: str, rest: str, query: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        repo_id, tail = self._split_repo(repo_type, rest, ("revision", "tree", "xet-read-token"))
        self._follow_rename(repo_type, repo_id, f"/api/{repo_type}s/", tail)
        repo = self._repo(repo_type, repo_id)
        view = self.server.hub.view
        if not tail or tail[0] == "revision":
            expand = _expand(query, DETAIL_EXPAND) if repo_type == "model" else []
            sha = self._revision(repo, "/".join(tail[1:]) if len(tail) > 1 else "main")
            if repo_type == "dataset":
                return self._json(view.dataset_json(repo, sha))
            return self._json(view.model_json(repo, expand or None, sha, blobs=_flag(query, "blobs")))
        if tail[0] == "tree" and len(tail) >= 2:
            sha = self._revision(repo, tail[1])
            prefix = "/".join(tail[2:]).strip("/")
            return self._json(_tree(generated_files(view.world, repo, sha), prefix, _flag(query, "recursive")))
        if tail[0] == "xet-read-token" and len(tail) == 2:
            # The route huggingface_hub asks for a Xet token (utils/_xet.py `xet_connection_info_refresh_url`,
            # `/api/{type}s/{id}/xet-read-token/{rev}`) and the headers it reads from the answer
            # (constants.py lines 334-336, `parse_xet_connection_info_from_headers`).
            self._revision(repo, tail[1])
            return self._json(
                {},
                {
                    "X-Xet-Cas-Url": f"{self.server.hub.url}/_sim/xet-cas",
                    "X-Xet-Access-Token": "sim-xet-read-token",
                    "X-Xet-Token-Expiration": str(int(time.time()) + 3600),
                },
            )
        raise _HubError(404, "NotFound", f"Unknown endpoint {rest}")

    def _resolve(self, repo_type: str, rest: str, *, head: bool) -> tuple[int, bytes, dict[str, str]]:
        repo_id, tail = self._split_repo(repo_type, rest, ("resolve",))
        if len(tail) < 3 or tail[0] != "resolve":
            raise _HubError(404, "NotFound", "Not found")
        self._follow_rename(repo_type, repo_id, "/", tail)
        repo = self._repo(repo_type, repo_id)
        sha = self._revision(repo, tail[1])
        filename = unquote("/".join(tail[2:]))
        files = generated_files(self.server.hub.view.world, repo, sha)
        entry = files.get(filename)
        if entry is None:
            raise _HubError(404, "EntryNotFound", f"{filename} does not exist at {sha}")
        if repo.gated:
            token = self._token()
            if token is None:
                raise _HubError(
                    401,
                    "GatedRepo",
                    f"Access to {repo.repo_id} is restricted. You must be "
                    "authenticated and have accepted its licence to access it.",
                )
            accepted = self.server.hub.view.world.tokens.get(token)
            if accepted is None or ("*" not in accepted and repo.repo_id not in accepted):
                raise _HubError(
                    403,
                    "GatedRepo",
                    f"Access to {repo.repo_id} is restricted and you are not in "
                    "the authorized list. Visit its page to ask for access.",
                )
        content = entry.content
        oid = hashlib.sha256(content).hexdigest() if entry.lfs else _git_oid(content)
        headers = {
            "ETag": f'"{oid}"',
            "X-Repo-Commit": sha,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if entry.lfs:
            headers["X-Linked-Etag"] = f'"{oid}"'
            headers["X-Linked-Size"] = str(len(content))
        if self._xet:
            # A Xet-backed file: huggingface_hub reads `X-Xet-Hash` and the `xet-auth` link
            # (utils/_xet.py `parse_xet_file_data_from_response`) and downloads it with hf_xet
            # (file_download.py `_download_to_tmp_and_move`). The hash is any 64-hex id here.
            prefix = "/api/datasets/" if repo_type == "dataset" else "/api/models/"
            token_url = f"{self._xet_origin.rstrip('/')}{prefix}{repo.repo_id}/xet-read-token/{sha}"
            headers["X-Xet-Hash"] = hashlib.sha256(content).hexdigest()
            headers["Link"] = f'<{token_url}>; rel="xet-auth"'
        status = 200
        byte_range = self.headers.get("Range")
        if byte_range and byte_range.startswith("bytes=") and not head:
            start_text, _, end_text = byte_range[6:].partition("-")
            start = int(start_text or 0)
            end = int(end_text) if end_text else len(content) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content = content[start : end + 1]
            status = 206
        headers["Content-Length"] = str(len(content))
        return status, content, headers

    # -- admin ----------------------------------------------------------------------------------

    def _admin(self, path: str) -> None:
        hub = self.server.hub
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"null") if length else None
        if path == "/_sim/stats":
            result: Any = hub.stats.snapshot()
        elif path == "/_sim/stats/reset":
            hub.stats.reset()
            result = {}
        elif path == "/_sim/faults":
            hub.faults.set([FaultRule.from_dict(r) for r in (payload or [])], seed=0)
            result = {"rules": len(hub.faults.rules)}
        elif path == "/_sim/evolve":
            payload = payload or {}
            result = asdict(hub.view.world.evolve(payload.get("fraction", 0.01), seed=payload.get("seed")))
        elif path == "/_sim/truth":
            result = truth_figures(hub.view.world)
        elif path == "/_sim/ratelimit":
            result = hub.limiter.snapshot()
        else:
            self._error(404, "NotFound", "unknown admin endpoint")
            return
        status, body, headers = self._json(result)
        self._send(status, body, headers)


def truth_figures(world: World, page_size: int = PAGE_MAX) -> dict[str, Any]:
    """The truth's size and digest, and the fewest requests a full crawl of it can make.

    - `nodes`, `edges`, `digest`: the truth (`World.truth`); `world_models`: live models in all.
    - `roots`: the watched roots present (a renamed one counts, under its new id).
    - `walk_bound`: a walk, the fewest requests: one detail request per root, and one
      `filter=base_model:<id>` listing per node, since a listing cannot tell a leaf (the Hub refuses
      `expand=childrenModelCount` there) - plus the further pages of nodes with more than
      `page_size` children. Without such nodes, it is `nodes + roots`.
    - `scan_pages`: the pages of the whole listing (`ceil(world_models / page_size)`); `scan_bound`:
      those pages and one detail request per root.
    - `listing_lower_bound`, `listing_pages`: listings (and their pages) of a walk that knew each
      node's children per relation, one `filter=base_model:<relation>:<id>` listing per (node,
      relation) with children. Only the detail route tells that, so it is a floor, not a target.

    >>> truth_figures(build_world(WorldSpec(size=2000, seed=1)))["walk_bound"]   # doctest: +SKIP
    """
    truth = world.truth()
    roots = sum(1 for r in world.roots if world.model(world.redirect(r) or r) is not None)
    lower_bound = pages = walk = 0
    for node in truth.nodes:
        counts = world.children_count(node)
        walk += max(1, -(-sum(counts.values()) // page_size))
        for relation, n in counts.items():
            if relation in RELATIONS and n:
                lower_bound += 1
                pages += -(-n // page_size)
    live = sum(1 for _ in world.live_models())
    scan_pages = -(-live // page_size)
    return {
        "nodes": len(truth.nodes),
        "edges": len(truth.edges),
        "roots": roots,
        "walk_bound": walk + roots,
        "scan_pages": scan_pages,
        "scan_bound": scan_pages + roots,
        "listing_lower_bound": lower_bound,
        "listing_pages": pages,
        "world_models": live,
        "digest": lineage_digest(truth.nodes, truth.edges),
    }


def lineage_digest(nodes: Iterable[str], edges: Iterable[tuple[str, ...]]) -> str:
    """A short hash of a set of models and edges, to compare a store with the truth at a glance."""
    digest = hashlib.sha256()
    for node in sorted(nodes):
        digest.update(node.encode() + b"\n")
    for edge in sorted(edges):
        digest.update("\t".join(edge).encode() + b"\n")
    return digest.hexdigest()[:16]


def _siblings(files: dict[str, SimFile], *, blobs: bool) -> list[dict[str, Any]]:
    siblings: list[dict[str, Any]] = []
    for path, entry in sorted(files.items()):
        item: dict[str, Any] = {"rfilename": path}
        if blobs:
            item["size"] = len(entry.content)
            item["blobId"] = _git_oid(entry.content)
            if entry.lfs:
                item["lfs"] = {
                    "sha256": hashlib.sha256(entry.content).hexdigest(),
                    "size": len(entry.content),
                    "pointerSize": 134,
                }
        siblings.append(item)
    return siblings


def _tree(files: dict[str, SimFile], prefix: str, recursive: bool) -> list[dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for path, entry in sorted(files.items()):
        if prefix and not path.startswith(prefix + "/"):
            continue
        rel = path[len(prefix) + 1 :] if prefix else path
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(([prefix] if prefix else []) + parts[:depth])
            if depth == 1 or recursive:
                entries.setdefault(
                    directory,
                    {"type": "directory", "oid": _git_oid(directory.encode()), "size": 0, "path": directory},
                )
        if len(parts) > 1 and not recursive:
            continue
        item: dict[str, Any] = {
            "type": "file",
            "oid": _git_oid(entry.content),
            "size": len(entry.content),
            "path": path,
        }
        if entry.lfs:
            item["lfs"] = {
                "oid": hashlib.sha256(entry.content).hexdigest(),
                "size": len(entry.content),
                "pointerSize": 134,
            }
            item["oid"] = _git_oid(
                f"version https://git-lfs.github.com/spec/v1\noid sha256:"
                f"{item['lfs']['oid']}\nsize {len(entry.content)}\n".encode()
            )
        entries[path] = item
    return list(entries.values())


def _route_name(path: str) -> str:
    if path in ("/api/models", "/api/datasets"):
        return "list"
    if path.startswith("/api/"):
        return "tree" if "/tree/" in path else "info"
    return "resolve"


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[0].lower() in ("true", "1")


def _expand(query: dict[str, list[str]], accepted: frozenset[str]) -> list[str]:
    """The `expand` values asked for; 400 for the whole request when one is not `accepted`."""
    values = query.get("expand", []) + query.get("expand[]", [])
    if any(value not in accepted for value in values):
        raise _HubError(400, "BadRequest", f'"expand" must be one of [{", ".join(sorted(accepted))}]')
    return values


def _limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        raise _HubError(400, "BadRequest", f'"limit" must be an integer, not {text[:20]!r}') from None
    if limit < 1:
        raise _HubError(400, "BadRequest", f'"limit" must be at least 1, not {limit}')
    return min(limit, PAGE_MAX)


class _HubError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Moved(Exception):
    """A renamed repo: answer 307 to `path` (the query string is added by the dispatcher)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    hub: SimHub

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (or a fault we injected) is routine here, not worth a traceback.
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class SimHub:
    """The simulated Hub on loopback. A context manager; `url` is what HF_ENDPOINT should be.

    `rate_limit=(q, w)` is a fixed window of q requests per w seconds per bucket (api, resolvers,
    pages), always enforced and announced on every response; `None` means `DEFAULT_RATE_LIMIT`, a
    window no test meets by accident.

    >>> with SimHub(build_world(WorldSpec(size=200)), rate_limit=(500, 300)) as hub:   # doctest: +SKIP
    ...     HfApi(endpoint=hub.url).model_info("google/gemma-2b")
    """

    def __init__(
        self,
        world: World,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        self.view = HubView(world)
        self.faults = FaultPlan()
        self.stats = RequestStats()
        self.rate_limit = rate_limit or DEFAULT_RATE_LIMIT
        self.limiter = FixedWindows(*self.rate_limit)
        #: Where listings' next-page links point (`scheme://host:port`); None: the host the request
        #: named, as the Hub does. A test sets another origin to see that no token follows it there.
        self.link_origin: str | None = None
        self._server = _Server((host, port), _Handler)
        self._server.hub = self
        self._thread: threading.Thread | None = None

    @property
    def world(self) -> World:
        return self.view.world

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SimHub:
        self._thread = threading.Thread(target=self.serve_forever, name="simhub", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        # A short poll keeps `stop` quick (a test's teardown waits for it).
        self._server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SimHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
