"""The simulated Hub's HTTP server: the parts of the Hub API the auditor uses, as the Hub serves them.

The real `huggingface_hub` client talks to it unchanged through `HF_ENDPOINT`. It serves:

    GET  /api/models                          filter (ANDed), search, author, sort, limit, expand, full;
                                              pages of at most 1000 with a `Link: <...>; rel="next"` header
    GET  /api/models/{id}[/revision/{rev}]    one model (all fields, or `expand`)
    GET  /api/models/{id}/tree/{rev}[/{path}] the file listing (`recursive=true`)
    HEAD|GET /{id}/resolve/{rev}/{path}       file bytes with ETag, X-Repo-Commit, X-Linked-* headers
    ... and the same under /api/datasets and /datasets for dataset repos.

Gated repos serve metadata to anyone and files only to tokens whose owner accepted the licence
(401 without a token, 403 with one that did not). Unknown repos answer 401 without a token and
404 with one, with the `X-Error-Code` headers the client turns into typed errors.

Test-only endpoints live under `/_sim/` and are never counted: `GET /_sim/stats`,
`POST /_sim/stats/reset`, `POST /_sim/faults` (a JSON list of fault rules), `POST /_sim/evolve`
(`{"fraction": 0.01, "seed": 1}`), `GET /_sim/truth`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from auditor.lineage import RELATIONS
from auditor.simhub.faults import FaultPlan, FaultRule, RequestStats
from auditor.simhub.world import SimFile, SimRepo, World, generated_files

PAGE_MAX = 1000
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
_SORT_KEYS = {
    "downloads": lambda r: r.downloads,
    "likes": lambda r: r.likes,
    "createdAt": lambda r: r.created_at,
    "lastModified": lambda r: r.last_modified,
    "trendingScore": lambda r: r.likes,
}


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _object_id(repo_id: str) -> str:
    return hashlib.md5(repo_id.encode()).hexdigest()[:24]


def _git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubView:
    """Renders the world as Hub JSON, with per-version caches of listings."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._cache: OrderedDict[tuple[Any, ...], list[str]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def model_json(
        self, repo: SimRepo, fields: Iterable[str] | None, sha: str | None = None, *, blobs: bool = False
    ) -> dict[str, Any]:
        """One model as the Hub describes it; `fields=None` means every field; `blobs` adds file sizes."""
        world = self.world
        sha = sha or repo.sha
        wanted = None if fields is None else set(fields)

        def want(name: str) -> bool:
            return wanted is None or name in wanted

        out: dict[str, Any] = {"_id": _object_id(repo.repo_id), "id": repo.repo_id}
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
            out["trendingScore"] = repo.likes // 10
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
                "models": [{"_id": _object_id(p), "id": p} for p in repo.declared],
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
            "_id": _object_id("datasets/" + repo.repo_id),
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

    def matching_ids(
        self, filters: tuple[str, ...], author: str | None, search: str | None, sort: str | None
    ) -> list[str]:
        world = self.world
        key = (world.version, filters, author, search, sort)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        with world.lock:
            if filters:
                sets = sorted((world.with_tag(f) for f in filters), key=len)
                found = set(sets[0]).intersection(*sets[1:])
                ids = [i for i in found if not world.models[i].deleted]
                ids.sort(key=lambda i: world.models[i].created_at)
            else:
                ids = world.ordered_ids()
            if author:
                ids = [i for i in ids if i.split("/")[0] == author]
            if search:
                needle = search.lower()
                ids = [i for i in ids if needle in i.lower()]
            if sort:
                sort_key = _SORT_KEYS[sort]
                ids.sort(key=lambda i: (sort_key(world.models[i]), i), reverse=True)
        with self._cache_lock:
            self._cache[key] = ids
            while len(self._cache) > 512:
                self._cache.popitem(last=False)
        return ids


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

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
        if path.startswith("/_sim/"):
            self._admin(path)
            return
        route = _route_name(path)
        rule = hub.faults.pick(path)
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
            self._error(
                429,
                "RateLimited",
                "You have been rate-limited; retry later.",
                {"Retry-After": str(rule.retry_after), "RateLimit": f'"api";r=0;t={rule.retry_after}'},
            )
            return
        if rule is not None and rule.kind == "server":
            hub.stats.add(route, rule.status)
            self._error(rule.status, "InternalError", "Simulated server error")
            return
        limited = hub.take_rate_limit(route)
        if limited is not None:
            hub.stats.add(route, 429)
            self._error(
                429,
                "RateLimited",
                "Rate limit exceeded for this window.",
                {"Retry-After": str(limited), "RateLimit": f'"{_bucket(route)}";r=0;t={limited}'},
            )
            return
        try:
            status, body, headers = self._handle(path, parse_qs(url.query, keep_blank_values=True), head=head)
        except _HubError as err:
            hub.stats.add(route, err.status)
            self._error(err.status, err.code, err.message)
            return
        hub.stats.add(route, status)
        self._send(status, body, headers, head=head, truncate=rule is not None and rule.kind == "truncate")

    def _send(
        self, status: int, body: bytes, headers: dict[str, str], *, head: bool = False, truncate: bool = False
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        limit = self.server.hub.rate_limit
        if limit is not None and "RateLimit" not in headers:
            self.send_header("RateLimit-Policy", f'"fixed window";"api";q={limit[0]};w={int(limit[1])}')
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        if truncate:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(body)

    def _json(self, data: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        body = json.dumps(data, separators=(",", ":")).encode()
        return 200, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}

    def _error(self, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Error-Code": code,
            "X-Error-Message": message,
            **(extra or {}),
        }
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
        expand = query.get("expand") or query.get("expand[]") or []
        full = query.get("full", ["false"])[0].lower() in ("true", "1")
        sort = query.get("sort", [None])[0]
        if sort is not None and sort not in _SORT_KEYS:
            raise _HubError(400, "BadRequest", f"Invalid sort parameter {sort!r}")
        try:
            limit = min(int(query.get("limit", [PAGE_MAX])[0]), PAGE_MAX)
            offset = _decode_cursor(query.get("cursor", [None])[0])
        except ValueError:
            raise _HubError(400, "BadRequest", "Invalid limit or cursor") from None
        filters = tuple(sorted(set(query.get("filter", []))))
        ids = view.matching_ids(filters, query.get("author", [None])[0], query.get("search", [None])[0], sort)
        page = ids[offset : offset + max(limit, 1)]
        if expand:
            fields: Iterable[str] | None = expand
        elif full:
            fields = (
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
        else:
            fields = LIST_DEFAULT_FIELDS
        extra = tuple(
            name
            for name, flag in (("cardData", "cardData"), ("config", "config"))
            if query.get(flag, ["false"])[0].lower() in ("true", "1")
        )
        if extra and fields is not None:
            fields = (*fields, *extra)
        data = []
        for repo_id in page:
            repo = world.models.get(repo_id)
            if repo is not None and not repo.deleted:
                data.append(view.model_json(repo, fields))
        headers = {}
        if offset + len(page) < len(ids):
            params = [(k, v) for k, values in query.items() if k != "cursor" for v in values]
            params.append(("cursor", _encode_cursor(offset + len(page))))
            host = self.headers.get("Host", f"127.0.0.1:{self.server.server_port}")
            headers["Link"] = f'<http://{host}{path}?{urlencode(params)}>; rel="next"'
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
        two = "/".join(parts[:2])
        if len(parts) >= 2 and two in repos:
            return two, parts[2:]
        if parts[0] in repos or (len(parts) >= 2 and parts[1] in markers):
            return parts[0], parts[1:]
        return two, parts[2:]

    def _api_repo(self, repo_type: str, rest: str, query: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        repo_id, tail = self._split_repo(repo_type, rest, ("revision", "tree"))
        repo = self._repo(repo_type, repo_id)
        view = self.server.hub.view
        if not tail or tail[0] == "revision":
            sha = self._revision(repo, "/".join(tail[1:]) if len(tail) > 1 else "main")
            if repo_type == "dataset":
                return self._json(view.dataset_json(repo, sha))
            expand = query.get("expand") or query.get("expand[]") or None
            blobs = query.get("blobs", ["false"])[0].lower() in ("true", "1")
            return self._json(view.model_json(repo, expand, sha, blobs=blobs))
        if tail[0] == "tree" and len(tail) >= 2:
            sha = self._revision(repo, tail[1])
            prefix = "/".join(tail[2:]).strip("/")
            recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
            return self._json(_tree(generated_files(view.world, repo, sha), prefix, recursive))
        raise _HubError(404, "NotFound", f"Unknown endpoint {rest}")

    def _resolve(self, repo_type: str, rest: str, *, head: bool) -> tuple[int, bytes, dict[str, str]]:
        repo_id, tail = self._split_repo(repo_type, rest, ("resolve",))
        if len(tail) < 3 or tail[0] != "resolve":
            raise _HubError(404, "NotFound", "Not found")
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
        else:
            self._error(404, "NotFound", "unknown admin endpoint")
            return
        status, body, headers = self._json(result)
        self._send(status, body, headers)


def truth_figures(world: World) -> dict[str, Any]:
    """Size and digests of the truth, and the lower bound of listing requests for a full crawl of it."""
    truth = world.truth()
    lower_bound = 0
    pages = 0
    for node in truth.nodes:
        for relation, n in world.children_count(node).items():
            if relation in RELATIONS and n:
                lower_bound += 1
                pages += -(-n // PAGE_MAX)
    return {
        "nodes": len(truth.nodes),
        "edges": len(truth.edges),
        "listing_lower_bound": lower_bound,
        "listing_pages": pages,
        "world_models": sum(1 for _ in world.live_models()),
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


def _bucket(route: str) -> str:
    return "resolvers" if route == "resolve" else "api"


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["o"])
    except Exception as err:
        raise ValueError("bad cursor") from err


class _HubError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


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

    `rate_limit=(q, w)` enforces a fixed window of q requests per w seconds per bucket (api,
    resolvers), answering 429 with the Hub's headers once a window is spent.
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
        self.rate_limit = rate_limit
        self._windows: dict[str, tuple[float, int]] = {}
        self._window_lock = threading.Lock()
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

    def take_rate_limit(self, route: str) -> int | None:
        """Count a request against its window; seconds until reset when the window is spent."""
        if self.rate_limit is None:
            return None
        quota, window = self.rate_limit
        bucket = _bucket(route)
        now = time.monotonic()
        with self._window_lock:
            start, used = self._windows.get(bucket, (now, 0))
            if now - start >= window:
                start, used = now, 0
            if used >= quota:
                return max(1, int(window - (now - start) + 0.999))
            self._windows[bucket] = (start, used + 1)
            return None

    def start(self) -> SimHub:
        self._thread = threading.Thread(target=self._server.serve_forever, name="simhub", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SimHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
