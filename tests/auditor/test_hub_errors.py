"""The table that turns the Hub's failures into our errors (`auditor.hub.failures`), pinned row by row.

Each failure is the one huggingface_hub itself raises: an answer (a real `httpx2.Response` to a
real `httpx2.Request`) goes through its `hf_raise_for_status`, so a release that raises another
class for the same answer fails here first; a transport failure is httpx2's own error. Every case
is translated for both sides, the audit's (a listing and a download) and the crawler's. No
network, no server: the whole module runs in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx2
import pytest
from huggingface_hub import errors as hub_errors
from huggingface_hub.utils import hf_raise_for_status, validate_repo_id

from auditor.errors import (
    PERMANENT_CODES,
    HubError,
    HubUnavailableError,
    ModelError,
    ModelFailed,
    ModelSkipped,
    StopRequested,
    hub_unreachable,
)
from auditor.hub.failures import FAILURES, HubCall, classify, to_hub_error, to_model_error

SHA = "1a2b3c4d5e6f" + "7" * 28
REPO = "acme/x"
API = f"https://huggingface.co/api/models/{REPO}/revision/{SHA}"
FILE = f"https://huggingface.co/{REPO}/resolve/{SHA}/config.json"

LISTING = HubCall("listing the files of", "model", REPO, SHA)
DOWNLOAD = HubCall("downloading config.json of", "model", REPO, SHA)
CRAWL = HubCall("fetching the metadata of", "model", REPO)


def answered(status: int, url: str = API, **headers: str) -> BaseException:
    """The error huggingface_hub raises for this answer (utils/_http.py `hf_raise_for_status`);
    `X_Error_Code="GatedRepo"` is the header `X-Error-Code: GatedRepo`."""
    request = httpx2.Request("GET", url)
    headers = {name.replace("_", "-"): value for name, value in headers.items()}
    response = httpx2.Response(status, headers=headers, json={"error": "said by the Hub"}, request=request)
    with pytest.raises(hub_errors.HfHubHTTPError) as raised:
        hf_raise_for_status(response)
    return raised.value


def refused_connection() -> BaseException:
    return httpx2.ConnectError("[Errno 111] Connection refused", request=httpx2.Request("GET", API))


def wrapped_head_failure(cause: BaseException) -> BaseException:
    """What `hf_hub_download` raises when a file's HEAD failed and the cache has no copy
    (file_download.py `_raise_on_head_call_error`)."""
    try:
        raise hub_errors.LocalEntryNotFoundError("cannot find the requested files in the local cache") from cause
    except hub_errors.LocalEntryNotFoundError as err:
        return err


def undecodable_body() -> BaseException:
    response = httpx2.Response(200, content=b"<html>busy</html>", request=httpx2.Request("GET", API))
    with pytest.raises(ValueError) as raised:
        response.json()
    return raised.value


def invalid_id() -> BaseException:
    with pytest.raises(hub_errors.HFValidationError) as raised:
        validate_repo_id("acme/x/y")
    return raised.value


class PanicException(BaseException):
    """What pyo3_runtime.PanicException derives from (a panic in hf_xet's Rust code)."""


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], BaseException]
    #: What huggingface_hub raised (pins its behaviour that the table relies on); None: not checked.
    raised: type[BaseException] | None
    kind: str
    #: (class, code) on the audit's side, listing and download; None: raised as it was.
    listing: tuple[type[ModelError], str] | None
    download: tuple[type[ModelError], str] | None
    crawl: type[HubError] | None
    #: Words the audit-side message must hold besides the repo.
    says: tuple[str, ...] = ()


def _failed(code: str) -> tuple[type[ModelError], str]:
    return (ModelFailed, code)


CASES = [
    Case(
        "gated",
        lambda: answered(403, X_Error_Code="GatedRepo"),
        hub_errors.GatedRepoError,
        "gated",
        (ModelSkipped, "gated"),
        (ModelSkipped, "gated"),
        None,
        ("gated", "HTTP 403"),
    ),
    Case(
        "revision not found",
        lambda: answered(404, X_Error_Code="RevisionNotFound"),
        hub_errors.RevisionNotFoundError,
        "revision_missing",
        _failed("missing"),
        _failed("missing"),
        HubError,
        ("no such revision",),
    ),
    Case(
        "repo not found",
        lambda: answered(404, X_Error_Code="RepoNotFound"),
        hub_errors.RepositoryNotFoundError,
        "repo_missing",
        _failed("missing"),
        _failed("missing"),
        None,
        ("does not exist",),
    ),
    Case(
        "401 for a repo, without a token",
        lambda: answered(401),
        hub_errors.RepositoryNotFoundError,
        "repo_missing",
        _failed("missing"),
        _failed("missing"),
        None,
        ("does not exist", "HTTP 401"),
    ),
    Case(
        "file not found",
        lambda: answered(404, FILE, X_Error_Code="EntryNotFound"),
        hub_errors.RemoteEntryNotFoundError,
        "file_missing",
        _failed("hub"),
        _failed("download"),
        HubError,
        ("no such file",),
    ),
    Case(
        "429 with the window spent",
        lambda: answered(429, RateLimit='"api";r=0;t=30'),
        hub_errors.HfHubHTTPError,
        "rate_limited",
        _failed("rate_limited"),
        _failed("download"),
        HubUnavailableError,
        ("HTTP 429", "tried again up to 5 times"),
    ),
    Case(
        "503",
        lambda: answered(503),
        hub_errors.HfHubHTTPError,
        "server_error",
        _failed("hub"),
        _failed("download"),
        HubUnavailableError,
        ("kept failing", "HTTP 503", "tried again up to 5 times"),
    ),
    Case(
        "501, not retried",
        lambda: answered(501),
        hub_errors.HfHubHTTPError,
        "server_error",
        _failed("hub"),
        _failed("download"),
        HubUnavailableError,
        ("HTTP 501",),
    ),
    Case(
        "400, a ValueError too",
        lambda: answered(400),
        hub_errors.BadRequestError,
        "refused",
        _failed("hub"),
        _failed("download"),
        HubError,
        ("refused", "HTTP 400", "said by the Hub"),
    ),
    Case(
        "403 for a disabled repo",
        lambda: answered(403, X_Error_Message="Access to this resource is disabled."),
        hub_errors.DisabledRepoError,
        "refused",
        _failed("hub"),
        _failed("download"),
        HubError,
        ("HTTP 403", "disabled"),
    ),
    Case(
        "408, left after the retries",
        lambda: answered(408),
        hub_errors.HfHubHTTPError,
        "refused",
        _failed("hub"),
        _failed("download"),
        HubError,
        ("HTTP 408",),
    ),
    Case(
        "a file's HEAD answered 503",
        lambda: wrapped_head_failure(answered(503, FILE)),
        hub_errors.LocalEntryNotFoundError,
        "server_error",
        _failed("hub"),
        _failed("download"),
        HubUnavailableError,
        ("HTTP 503",),
    ),
    Case(
        "an invalid id",
        invalid_id,
        hub_errors.HFValidationError,
        "invalid_id",
        _failed("hub"),
        _failed("download"),
        HubError,
        ("refuses the id",),
    ),
    Case(
        "a body that is not JSON",
        undecodable_body,
        ValueError,
        "undecodable",
        _failed("hub"),
        _failed("download"),
        HubUnavailableError,
        ("no usable answer", "JSONDecodeError"),
    ),
    Case(
        "a stream read twice",
        httpx2.StreamConsumed,
        httpx2.StreamError,
        "undecodable",
        _failed("hub"),
        _failed("download"),
        HubUnavailableError,
        ("StreamConsumed",),
    ),
    Case(
        "a body in a malformed content encoding",
        lambda: httpx2.DecodingError("Error -3 while decompressing data: incorrect header check"),
        httpx2.DecodingError,
        "undecodable",
        _failed("hub"),
        _failed("download"),
        HubUnavailableError,
        ("no usable answer", "DecodingError"),
    ),
    Case(
        "a refused connection",
        refused_connection,
        httpx2.TransportError,
        "unreachable",
        _failed("hub"),
        _failed("download"),
        HubUnavailableError,
        ("cannot reach the Hub at https://huggingface.co", "ConnectError"),
    ),
    Case(
        "a file's HEAD that found no server",
        lambda: wrapped_head_failure(refused_connection()),
        hub_errors.LocalEntryNotFoundError,
        "unreachable",
        _failed("hub"),
        _failed("download"),
        HubUnavailableError,
        ("cannot reach the Hub",),
    ),
    Case(
        "HF_HUB_OFFLINE",
        lambda: hub_errors.OfflineModeIsEnabled("offline mode is enabled"),
        None,
        "unreachable",
        _failed("hub"),
        _failed("download"),
        HubUnavailableError,
        ("HF_HUB_OFFLINE is set",),
    ),
    Case(
        "hf_xet failing",
        lambda: RuntimeError("xet: the reconstruction failed"),
        None,
        "other",
        _failed("hub"),
        _failed("download"),
        None,
        ("RuntimeError", "reconstruction failed"),
    ),
    Case(
        "a panic in hf_xet",
        lambda: PanicException("called `Option::unwrap()` on a `None` value"),
        None,
        "other",
        _failed("hub"),
        _failed("download"),
        None,
        ("PanicException",),
    ),
    Case("ours", lambda: ModelFailed("refused by a hook", code="download"), None, "ours", None, None, None),
    Case("a bug", lambda: TypeError("unexpected keyword"), None, "ours", None, None, None),
    Case("a stop", lambda: StopRequested("stop"), None, "ours", None, None, None),
]


def _raised_inside(err: BaseException, translate: Callable[[BaseException], BaseException | None]) -> BaseException:
    """Translate `err` where the callers do, inside the `except` that caught it, and raise the result."""
    try:
        try:
            raise err
        except BaseException as caught:
            failure = translate(caught)
            if failure is None:
                raise
            raise failure from None
    except BaseException as final:
        return final


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_failure_is_translated_for_the_audit_and_the_crawl(case: Case) -> None:
    err = case.make()
    if case.raised is not None:
        assert isinstance(err, case.raised), f"huggingface_hub raised {type(err).__name__}"
    assert classify(err).kind == case.kind

    for call, download, expected in ((LISTING, False, case.listing), (DOWNLOAD, True, case.download)):
        failure = to_model_error(err, call, download=download, retries=5)
        if expected is None:
            assert failure is None
            continue
        assert failure is not None
        assert (type(failure), failure.code) == expected
        assert f"model {REPO} at {SHA[:12]}" in str(failure), str(failure)
        assert call.action in str(failure)
        assert all(word in str(failure) for word in case.says), str(failure)
        assert failure.hint, f"no hint for {case.name}"
        assert "\n" not in str(failure) + failure.hint

    crawled = to_hub_error(err, CRAWL, retries=5)
    if case.crawl is None:
        assert crawled is None
    else:
        assert type(crawled) is case.crawl
        assert f"{CRAWL.action} model {REPO}" in str(crawled), str(crawled)
        assert crawled.hint and "\n" not in str(crawled) + crawled.hint


def test_every_row_of_the_table_is_pinned_by_a_case() -> None:
    assert {row.kind for row in FAILURES} == {case.kind for case in CASES}
    assert len({row.kind for row in FAILURES}) == len(FAILURES)
    assert FAILURES[-1].kind == "other"  # the last row takes whatever is left


def test_the_audit_codes_are_those_rows_store_and_none_is_permanent() -> None:
    codes = {v.code for row in FAILURES for v in (row.listing, row.download) if v is not None}
    assert codes == {"gated", "missing", "rate_limited", "hub", "download"}
    assert not codes & PERMANENT_CODES  # access and the network may clear up: a later run retries


@pytest.mark.parametrize("make", [refused_connection, lambda: wrapped_head_failure(refused_connection())])
def test_an_audit_failure_keeps_the_unreachable_hub_where_the_driver_looks(make: Callable[[], BaseException]) -> None:
    """The audit driver stops the run, instead of failing each model, when `hub_unreachable` finds a
    transport error in the ModelFailed's context: raised inside the `except`, it is there."""
    failure = _raised_inside(make(), lambda e: to_model_error(e, LISTING, retries=5))
    assert isinstance(failure, ModelFailed) and failure.code == "hub"
    unreachable = hub_unreachable(failure)
    assert unreachable is not None and str(unreachable).startswith("cannot reach the Hub at https://huggingface.co")


def test_what_passes_through_is_raised_as_it_was() -> None:
    for err in (StopRequested("stop"), AttributeError("x"), ModelSkipped("too big", code="too_large")):
        assert _raised_inside(err, lambda e: to_model_error(e, DOWNLOAD, download=True)) is err
        assert _raised_inside(err, lambda e: to_hub_error(e, CRAWL)) is err
    missing = answered(404, X_Error_Code="RepoNotFound")
    assert _raised_inside(missing, lambda e: to_hub_error(e, CRAWL)) is missing  # HubClient.model answers None


def test_the_crawls_unreachable_hub_is_said_as_the_cli_shows_it() -> None:
    """`auditor crawl` prints the message on one line that starts with what happened (tests/test_cli.py)."""
    crawled = to_hub_error(refused_connection(), HubCall("listing models with base_model:acme/x"))
    assert str(crawled).startswith("cannot reach the Hub at https://huggingface.co: ConnectError")
    assert str(crawled).endswith("while listing models with base_model:acme/x")
    offline = to_hub_error(hub_errors.OfflineModeIsEnabled("offline"), CRAWL)
    assert str(offline).startswith("HF_HUB_OFFLINE is set") and offline is not None and "unset" in (offline.hint or "")


def test_a_call_names_the_repo_type_the_id_and_the_revision() -> None:
    assert str(HubCall("downloading prompts.jsonl of", "dataset", "allenai/rtp", SHA)) == (
        f"downloading prompts.jsonl of dataset allenai/rtp at {SHA[:12]}"
    )
    assert HubCall("listing the files of", "model", REPO, "main").repo == f"model {REPO} at main"
    assert HubCall("fetching the metadata of", "model", REPO).repo == f"model {REPO}"
