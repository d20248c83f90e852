"""The Hub's failures as our errors: one table, read by the audit's Hub calls and by the crawler.

huggingface_hub 2.x turns every failed answer into an `HfHubHTTPError`, or a subclass that says
which failure it is (utils/_http.py `hf_raise_for_status`); its transport, httpx2, raises a
`TransportError` when no answer came (recognised by `auditor.errors.hub_unreachable`). `FAILURES`
lists what can go wrong, in the order it is recognised (the first row that matches wins), and what
each becomes on either side:

- the audit's (`auditor.hub.files`, through `to_model_error`): a `ModelSkipped` or `ModelFailed`
  with the `code` that the audit row stores. A `listing` (repo info and file tree) and a
  `download` differ: whatever stops a download is a `download` failure, which a later run retries
  (`PERMANENT_CODES` holds none of these codes).
- the crawler's (`crawlers.client`, through `to_hub_error`): a `HubError`, or a
  `HubUnavailableError`, which says the Hub is down or unreachable and stops the crawl.
- `PASS`: the error is raised as it was. That is what happens to our own errors, to bugs and to
  stop requests on every side, and on the crawler's to a repo that does not exist, which
  `HubClient.model` answers itself (None).

Every message names the call (`HubCall`: what it did, to which repo type, id and revision), says
what happened and comes with a hint. Which failures are tried again, and how often, is decided
before they get here (`auditor.hub.backoff`); the messages only say it.

>>> FAILURES[1].kind, FAILURES[1].listing
('gated', Verdict(error=<class 'auditor.errors.ModelSkipped'>, code='gated'))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from auditor.errors import HubError, HubUnavailableError, ModelError, ModelFailed, ModelSkipped, hub_unreachable
from auditor.hub.backoff import transient_failure
from auditor.textsafety import strip_control

#: Exceptions that are bugs (ours, or a library's after an upgrade), not a failed download: they
#: propagate, and the audit records them as `internal` with a logged traceback.
PROGRAMMING_ERRORS: tuple[type[Exception], ...] = (TypeError, AttributeError, NameError)
#: What stops the process rather than one download (a stop request is a KeyboardInterrupt).
INTERRUPTIONS: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit)

#: The next step, as each side's hints say it.
AGAIN = {
    "audit": "a later run tries again (`auditor audit --pending`)",
    "crawl": "run the same command again later: the crawl resumes where it stopped",
}


@dataclass(frozen=True)
class HubCall:
    """What a call to the Hub did, as an error about it names it.

    `action` is what was done (a verb phrase); `repo_id` is None for a call about no one repo (a
    listing of models), and `revision` when none was asked for (the default branch).

    >>> str(HubCall("listing the files of", "model", "acme/x", "1a2b3c4d5e6f" + "0" * 28))
    'listing the files of model acme/x at 1a2b3c4d5e6f'
    >>> str(HubCall("listing models with base_model:acme/x"))
    'listing models with base_model:acme/x'
    """

    action: str
    repo_type: str = "model"
    repo_id: str | None = None
    revision: str | None = None

    @property
    def repo(self) -> str:
        """`model acme/x at 1a2b3c4d5e6f`: the repo type and id, and the revision when known (a
        commit sha shortened to 12 digits, as the Hub's pages show it)."""
        if self.repo_id is None:
            return f"the {self.repo_type} repo"
        revision = self.revision
        if revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision):
            revision = revision[:12]
        return f"{self.repo_type} {self.repo_id}" + (f" at {revision}" if revision else "")

    def __str__(self) -> str:
        return self.action if self.repo_id is None else f"{self.action} {self.repo}"


@dataclass(frozen=True)
class Verdict:
    """What a failure becomes on the audit's side: the error raised and the code its row stores."""

    error: type[ModelError]
    code: str


def _failed(code: str) -> Verdict:
    return Verdict(ModelFailed, code)


def _skipped(code: str) -> Verdict:
    return Verdict(ModelSkipped, code)


#: In a column of `FAILURES`: the error is raised as it was.
PASS = None


@dataclass(frozen=True)
class Failure:
    """One row of `FAILURES`: a kind of failure, how it is recognised, and what it becomes.

    `says` and `hint` are templates. Their fields: `doing` (the `HubCall`), `repo` (its repo, with
    the revision), `repo_id`, `status` (the HTTP status), `said` (`: ` and what the Hub's answer
    said, or nothing), `retried` (`, tried again up to n times`, or nothing), `detail` (the error's
    type and message), `unreachable` and `unreachable_hint` (`hub_unreachable`'s message and hint),
    `again` (the side's next step, `AGAIN`).
    """

    kind: str
    when: Callable[[BaseException], bool]
    says: str
    hint: str
    #: The audit's side, when listing a repo (repo info, file tree) and when downloading a file.
    listing: Verdict | None
    download: Verdict | None
    #: The crawler's side.
    crawl: type[HubError] | None


def _raised(*names: str) -> Callable[[BaseException], bool]:
    """A test for errors of the named classes of huggingface_hub (`huggingface_hub.errors`),
    imported only once an error is there to test: a class that is gone fails loudly."""

    def test(err: BaseException) -> bool:
        from huggingface_hub import errors

        return isinstance(err, tuple(getattr(errors, name) for name in names))

    return test


def _answered(low: int, high: int) -> Callable[[BaseException], bool]:
    """A test for an `HfHubHTTPError` whose answer's status is within [low, high]."""

    def test(err: BaseException) -> bool:
        status = _status(err) if _raised("HfHubHTTPError")(err) else None
        return status is not None and low <= status <= high

    return test


def _passes_through(err: BaseException) -> bool:
    return isinstance(err, (ModelError, *PROGRAMMING_ERRORS, *INTERRUPTIONS))


def _undecodable(err: BaseException) -> bool:
    import httpx2

    return isinstance(err, (httpx2.StreamError, httpx2.DecodingError, ValueError))


def _unreachable(err: BaseException) -> bool:
    return hub_unreachable(err) is not None


def _anything(err: BaseException) -> bool:
    return True


#: The table. Facts about huggingface_hub 2.x (2.4) that it relies on are cited in the comments.
FAILURES: tuple[Failure, ...] = (
    # Ours (a token-guard refusal from a response hook, `auditor.hub.token`), a bug, or a stop.
    Failure(
        "ours",
        when=_passes_through,
        says="",
        hint="",
        listing=PASS,
        download=PASS,
        crawl=PASS,
    ),
    # X-Error-Code "GatedRepo" (utils/_http.py `hf_raise_for_status`). GatedRepoError derives from
    # RepositoryNotFoundError (errors.py, "to ensure backward compatibility"), so it comes first.
    # The crawler reads only metadata, which is public for a gated repo: it never meets one there,
    # and its `HubClient.model` answers "not found" for the whole RepositoryNotFoundError family.
    Failure(
        "gated",
        when=_raised("GatedRepoError"),
        says="{doing} failed: the repo is gated and this token has no access to its files (HTTP {status})",
        hint="accept its licence on the Hub page of {repo_id} with the account of HF_TOKEN; {again}",
        listing=_skipped("gated"),
        download=_skipped("gated"),
        crawl=PASS,
    ),
    # X-Error-Code "RevisionNotFound" (utils/_http.py `hf_raise_for_status`).
    Failure(
        "revision_missing",
        when=_raised("RevisionNotFoundError"),
        says="{doing} failed: the Hub knows no such revision (HTTP {status})",
        hint="check the revision; a commit force-pushed away is gone, and a later crawl records the change",
        listing=_failed("missing"),
        download=_failed("missing"),
        crawl=HubError,
    ),
    # X-Error-Code "RepoNotFound", or a 401 to a repo's URL unless the token itself was refused
    # ("Invalid credentials in Authorization header"): the Hub answers 401 for a private repo or a
    # gated one without a token as for a missing one (utils/_http.py `hf_raise_for_status`, lines 933-953).
    Failure(
        "repo_missing",
        when=_raised("RepositoryNotFoundError"),
        says="{doing} failed: the repo does not exist on the Hub, or is private (HTTP {status})",
        hint="check the id and HF_TOKEN; a deleted model is marked so at the next crawl",
        listing=_failed("missing"),
        download=_failed("missing"),
        crawl=PASS,
    ),
    # X-Error-Code "EntryNotFound": the repo and revision exist, the file does not (utils/_http.py
    # `hf_raise_for_status`; errors.py `RemoteEntryNotFoundError`, an HfHubHTTPError). Not
    # `LocalEntryNotFoundError`, which says the Hub could not be asked (see `_unwrapped`).
    Failure(
        "file_missing",
        when=_raised("RemoteEntryNotFoundError"),
        says="{doing} failed: the Hub has no such file at that revision (HTTP {status})",
        hint="the repo changed since it was listed, or is broken; {again}",
        listing=_failed("hub"),
        download=_failed("download"),
        crawl=HubError,
    ),
    # 429, left after the retries: every HTTP error is an HfHubHTTPError carrying its `response`
    # (errors.py `HfHubHTTPError.__init__`), a 429 one included (utils/_http.py `hf_raise_for_status`).
    Failure(
        "rate_limited",
        when=_answered(429, 429),
        says="{doing} failed: the Hub kept rate-limiting it (HTTP 429{retried})",
        hint="the Hub limits requests per 5-minute window, and a token (HF_TOKEN) has a larger quota; {again}",
        listing=_failed("rate_limited"),
        download=_failed("download"),
        crawl=HubUnavailableError,
    ),
    # 5xx, left after the retries (`http_backoff` retries 500, 502, 503 and 504:
    # `_DEFAULT_RETRY_ON_STATUS_CODES`, utils/_http.py line 466).
    Failure(
        "server_error",
        when=_answered(500, 599),
        says="{doing} failed: the Hub kept failing (HTTP {status}{retried})",
        hint="the Hub may be down; {again}",
        listing=_failed("hub"),
        download=_failed("download"),
        crawl=HubUnavailableError,
    ),
    # Any other answer the Hub refused: 400 (`BadRequestError`), 401 with a refused token, 403
    # (`DisabledRepoError` among others), 404 without an error code, 408 left after the retries...
    # `hf_raise_for_status` raises an HfHubHTTPError for every status it does not name (its last line).
    Failure(
        "refused",
        when=_raised("HfHubHTTPError"),
        says="{doing} failed: the Hub refused it (HTTP {status}{said})",
        hint="check the id, the endpoint (HF_ENDPOINT or [hub] endpoint) and the token (HF_TOKEN); {again}",
        listing=_failed("hub"),
        download=_failed("download"),
        crawl=HubError,
    ),
    # An id the client refuses before any request: `HFValidationError`, a ValueError (errors.py;
    # raised by utils/_validators.py `validate_repo_id`, which `HfApi.repo_info` runs first).
    Failure(
        "invalid_id",
        when=_raised("HFValidationError"),
        says="{doing} failed: huggingface_hub refuses the id ({detail})",
        hint="check the id: `namespace/name`, letters, digits, `-`, `_` and `.`",
        listing=_failed("hub"),
        download=_failed("download"),
        crawl=HubError,
    ),
    # An answer whose body cannot be read or decoded: httpx2's StreamError (a RuntimeError) or
    # DecodingError (a malformed content encoding; a RequestError but not a TransportError, so
    # `hub_unreachable` does not take it: httpx2/_exceptions.py), or a ValueError from decoding
    # the JSON or the text. BadRequestError is a ValueError too, and HFValidationError: both
    # matched above.
    Failure(
        "undecodable",
        when=_undecodable,
        says="{doing} failed: no usable answer from the Hub ({detail})",
        hint="check the network and the endpoint (HF_ENDPOINT or [hub] endpoint); {again}",
        listing=_failed("hub"),
        download=_failed("download"),
        crawl=HubUnavailableError,
    ),
    # No answer: a transport error of httpx2, or HF_HUB_OFFLINE (`auditor.errors.hub_unreachable`
    # cites both). On the audit's side, the ModelFailed is raised while the transport error is
    # handled, so it stays its `__context__`: the audit driver finds it there with
    # `hub_unreachable` and stops the run instead of failing each model.
    Failure(
        "unreachable",
        when=_unreachable,
        says="{unreachable}, while {doing}",
        hint="{unreachable_hint}",
        listing=_failed("hub"),
        download=_failed("download"),
        crawl=HubUnavailableError,
    ),
    # Anything else. On the download side that includes hf_xet's failures, RuntimeErrors (and
    # `XetDownloadError`, errors.py), and a panic in its Rust code, PyO3's PanicException, which
    # derives from BaseException "so that it will typically propagate all the way" (docs.rs/pyo3,
    # pyo3::panic::PanicException): `fetch_files` catches BaseException for it.
    Failure(
        "other",
        when=_anything,
        says="{doing} failed: {detail}",
        hint="{again}; a failure that persists means the repo is broken",
        listing=_failed("hub"),
        download=_failed("download"),
        crawl=PASS,
    ),
)


def classify(err: BaseException) -> Failure:
    """The row of `FAILURES` that `err` falls under (the first that matches).

    >>> classify(KeyboardInterrupt()).kind, classify(OSError("disk full")).kind
    ('ours', 'other')
    """
    err = _unwrapped(err)
    return next(row for row in FAILURES if row.when(err))


def to_model_error(err: BaseException, call: HubCall, *, download: bool = False, retries: int = 0) -> ModelError | None:
    """`err`, raised by a huggingface_hub call of the audit, as the error the audit raises for the
    model; None when it is to be raised as it was (`PASS`). Raise the result inside the `except`
    block that caught `err`: it keeps `err` as its context (the audit driver looks there).

    `download` says whether the call downloaded a file (else it listed the repo); `retries` is how
    often a failure worth retrying was tried again, at most.

    >>> try:
    ...     hf_hub_download("acme/x", "config.json", revision=sha)
    ... except BaseException as err:
    ...     raise to_model_error(err, HubCall("downloading config.json of", "model", "acme/x", sha), download=True)
    ... # doctest: +SKIP
    """
    row = classify(err)
    verdict = row.download if download else row.listing
    if verdict is None:
        return None
    message, hint = _say(row, err, call, retries, "audit")
    return verdict.error(message, hint=hint, code=verdict.code)


def to_hub_error(err: BaseException, call: HubCall, *, retries: int = 0) -> HubError | None:
    """`err`, raised by a Hub request of the crawler, as the error the crawler raises; None when it
    is to be raised as it was (`PASS`).

    >>> to_hub_error(OSError("disk full"), HubCall("fetching", "model", "acme/x")) is None
    True
    """
    row = classify(err)
    if row.crawl is None:
        return None
    message, hint = _say(row, err, call, retries, "crawl")
    return row.crawl(message, hint=hint)


def _say(row: Failure, err: BaseException, call: HubCall, retries: int, side: str) -> tuple[str, str]:
    err = _unwrapped(err)
    unreachable = hub_unreachable(err) if row.kind == "unreachable" else None
    fields: dict[str, Any] = {
        "doing": call,
        "repo": call.repo,
        "repo_id": call.repo_id or call.repo,
        "status": _status(err),
        "said": _said(err),
        "retried": _retried(err, retries),
        "detail": _describe(err),
        "unreachable": str(unreachable) if unreachable is not None else "",
        "unreachable_hint": (unreachable.hint or "") if unreachable is not None else "",
        "again": AGAIN[side],
    }
    return strip_control(row.says.format(**fields)), strip_control(row.hint.format(**fields))


def _unwrapped(err: BaseException) -> BaseException:
    """The HTTP error a failed `HEAD` of `hf_hub_download` answered, when `err` wraps one.

    `hf_hub_download` raises a `LocalEntryNotFoundError` from the HEAD's error when the file is not
    in the cache either, except for a missing or gated repo and a 401, which it raises as they are
    (file_download.py `_raise_on_head_call_error`): the HEAD's answer says what happened. A
    transport error stays wrapped: `hub_unreachable` follows `__cause__` by itself.
    """
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if isinstance(err, LocalEntryNotFoundError) and isinstance(err.__cause__, HfHubHTTPError):
        return err.__cause__
    return err


def _status(err: BaseException) -> int | None:
    return getattr(getattr(err, "response", None), "status_code", None)


def _said(err: BaseException) -> str:
    """What the Hub's answer said (`HfHubHTTPError.server_message`, from the X-Error-Message header
    and the JSON body's `error`: utils/_http.py `_format`), as `: ...`, or nothing."""
    said = " ".join(strip_control(getattr(err, "server_message", None) or "").split())[:300]
    return f": {said}" if said else ""


def _retried(err: BaseException, retries: int) -> str:
    """`, tried again up to n times` for a failure that the backoff retries (`auditor.hub.backoff`)."""
    if retries <= 0 or transient_failure(err) is None:
        return ""
    return f", tried again up to {retries} times"


def _describe(err: BaseException) -> str:
    """`Type: message`, and what caused it, on one line."""
    text = f"{type(err).__name__}: {err}"
    if err.__cause__ is not None:
        text += f" (because of {type(err.__cause__).__name__}: {err.__cause__})"
    return " ".join(strip_control(text).split())[:400]
