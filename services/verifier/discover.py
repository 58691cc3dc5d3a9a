"""The admin page's Discover action (:mod:`shared.discover`): an OpenID Provider's discovery document read afresh
through the guarded outbound client (not :mod:`.discovery`'s cache) and summed up for the admin.

Whether the document can be used is decided by the verifier's own reader (:func:`.oidc_answers.read_discovery`),
so Discover says what a widget open would find. :func:`read` is pure: any status and bytes end in a
:class:`DiscoverResult`, whatever the provider sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Mapping
from typing import Any

import structlog

from shared.destinations import host_of
from shared.discover import DOCUMENT_SHOWN, DiscoverFailure, DiscoverRequest, DiscoverResult, MethodCheck, ProviderSummary
from shared.domains import url_origin

from .discovery import discovery_url
from .failures import AuthFailure, Kind, kind_of, status_kind
from .identity import failed_call
from .oidc_answers import AUTH_METHODS, MAX_URL, ProviderMetadata, json_object, read_discovery, shown
from .outbound import OutboundClient

log = structlog.get_logger("doorman.verifier.discover")

MAX_LISTED = 50  # items of a published list shown

_TRANSPORT: dict[Kind, DiscoverFailure] = {
    Kind.BLOCKED: "blocked", Kind.TIMEOUT: "timeout", Kind.UNREACHABLE: "unreachable", Kind.UNREADABLE: "unreadable",
    Kind.NO_SLOT: "busy",
}
_TRANSPORT_WORDS: dict[DiscoverFailure, str] = {
    "blocked": "Doorman will not call this address: an issuer must be on the public internet.",
    "timeout": "The provider did not answer in time: check that it is up, then try again.",
    "unreachable": "Doorman could not connect to the provider: check the issuer's spelling and that the provider is up.",
    "unreadable": "The provider's answer cannot be read (too large, or compressed in a way Doorman does not read).",
    "busy": "Doorman's calls to this host are all in use just now: try again in a moment.",
}
UNUSABLE = "Doorman cannot use this document as it is (see the verdict)."


def _clean(text: str) -> str:
    """``text`` without what JSON cannot carry to the gateway (lone surrogates, as a JSON string may hold)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _text(value: object, limit: int = MAX_URL) -> str | None:
    """A string the provider sent, as shown: bounded and clean; None for anything else."""
    return _clean(value) if isinstance(value, str) and len(value) <= limit else None


def _strings(value: object) -> list[str]:
    items = value if isinstance(value, list) else []
    return [text for item in items[:MAX_LISTED] if (text := _text(item, 200)) is not None]


def _summary(document: Mapping[str, Any]) -> ProviderSummary:
    for name in ("introspection_endpoint_auth_methods_supported", "token_endpoint_auth_methods_supported"):
        if isinstance(document.get(name), list):
            auth = tuple(_strings(document[name]))
            break
    else:
        auth = ("client_secret_basic",)  # none published: the standard's default
    return ProviderSummary(
        issuer=_text(document.get("issuer")), userinfo_endpoint=_text(document.get("userinfo_endpoint")),
        introspection_endpoint=_text(document.get("introspection_endpoint")), jwks_uri=_text(document.get("jwks_uri")),
        introspection_auth_methods=list(auth), signing_algs=_strings(document.get("id_token_signing_alg_values_supported")),
        end_session_endpoint=_text(document.get("end_session_endpoint")),
        backchannel_logout_supported=document.get("backchannel_logout_supported") is True,
    )


def _mismatch(asked: str, published: object) -> str:
    if isinstance(published, str) and published.rstrip("/") == asked.rstrip("/"):
        return (f"The document is for the issuer {shown(published)}, which differs from {shown(asked)} by a trailing "
                "slash: set the issuer exactly as the provider spells it, trailing slash included.")
    if not isinstance(published, str):
        return "The document names no issuer: is this an OpenID Provider's discovery document?"
    return (f"The document is for the issuer {shown(published)}, not {shown(asked)}: set the issuer exactly as the "
            "provider spells it.")


def _failure(status: int, document: Mapping[str, Any] | None, issuer: str) -> tuple[DiscoverFailure, str]:
    """Why :func:`read_discovery` refused the answer, as a code and a verdict (in its order of checks)."""
    if (kind := status_kind(status)) is not None:
        if kind is Kind.UNAVAILABLE:
            return "http_status", f"The provider is unavailable just now (HTTP {status}): try again later."
        return "http_status", f"There is no discovery document there (HTTP {status}): is the issuer right?"
    if document is None:
        return "not_json", "The answer is not a JSON document: is the issuer right?"
    if document.get("issuer") != issuer:
        return "issuer_mismatch", _mismatch(issuer, document.get("issuer"))
    return "invalid_document", "The document cannot be used: a URL in it is not an http(s) URL."


def _userinfo(metadata: ProviderMetadata | None) -> MethodCheck:
    if metadata is None:
        return MethodCheck(usable=False, why=UNUSABLE)
    if metadata.userinfo_endpoint is None:
        return MethodCheck(usable=False, why="This provider publishes no userinfo endpoint.")
    return MethodCheck(usable=True, why=f"Doorman would check tokens at {_clean(metadata.userinfo_endpoint)}.")


def _introspection(metadata: ProviderMetadata | None, issuer: str) -> MethodCheck:
    if metadata is None:
        return MethodCheck(usable=False, why=UNUSABLE)
    endpoint = metadata.introspection_endpoint
    if endpoint is None:
        return MethodCheck(usable=False, why="This provider publishes no introspection endpoint: use userinfo.")
    auth = metadata.introspection_auth()
    if auth is None:
        return MethodCheck(usable=False, why=(
            f"This provider takes neither {' nor '.join(AUTH_METHODS)} at its introspection endpoint (it publishes "
            f"{shown(list(metadata.introspection_auth_methods))}): use userinfo."))
    if url_origin(endpoint) is None or url_origin(endpoint) != url_origin(issuer):
        return MethodCheck(usable=False, why=(
            f"The introspection endpoint {_clean(endpoint)} is on another origin than the issuer: Doorman sends the client "
            "secret only to the issuer's origin, so it would not call it. Use userinfo."))
    return MethodCheck(usable=True, why=(
        f"Doorman would introspect tokens at {_clean(endpoint)}, as the client id with its secret ({auth})."))


def read(issuer: str, status: int, body: bytes, *, elapsed_ms: float = 0.0) -> DiscoverResult:
    """The answer to ``GET {issuer}/.well-known/openid-configuration``, summed up; never raises."""
    document = json_object(body) if status_kind(status) is None else None
    metadata: ProviderMetadata | None = None
    failure: DiscoverFailure | None
    detail: str | None
    try:
        metadata = read_discovery(status, body, issuer)
    except AuthFailure as exc:
        failure, verdict = _failure(status, document, issuer)
        detail = exc.detail
    else:
        failure, verdict, detail = None, "Found it: the provider's discovery document, for exactly this issuer.", None
    userinfo, introspection = _userinfo(metadata), _introspection(metadata, issuer)
    if metadata is not None and not (userinfo.usable or introspection.usable):
        failure, verdict = "no_endpoint", ("The document names this issuer, but Doorman can check tokens at none of "
                                           "its endpoints (see userinfo and introspection).")
        detail = f"oidc.method: userinfo: {userinfo.why} introspection: {introspection.why}"
    text = body.decode("utf-8", errors="replace")
    return DiscoverResult(
        ok=failure is None, verdict=verdict, failure=failure, detail=detail, issuer=issuer,
        issuer_matches=document is not None and document.get("issuer") == issuer, document_url=discovery_url(issuer),
        http_status=status, elapsed_ms=round(elapsed_ms, 1), provider=_summary(document) if document is not None else None,
        userinfo=userinfo, introspection=introspection, document=text[:DOCUMENT_SHOWN], document_truncated=len(text) > DOCUMENT_SHOWN,
    )


def unanswered(issuer: str, kind: Kind, exc: BaseException, *, elapsed_ms: float) -> DiscoverResult:
    """No answer to read: the call was refused, failed or could not be made."""
    failure = _TRANSPORT.get(kind, "unreachable")
    return DiscoverResult(
        ok=False, verdict=_TRANSPORT_WORDS[failure], failure=failure,
        detail=failed_call(kind, exc, "the OpenID Provider's discovery document"), issuer=issuer, issuer_matches=False,
        document_url=discovery_url(issuer), http_status=None, elapsed_ms=round(elapsed_ms, 1), provider=None,
        userinfo=MethodCheck(usable=False, why=UNUSABLE), introspection=MethodCheck(usable=False, why=UNUSABLE),
        document=None, document_truncated=False,
    )


async def discover(http: OutboundClient, issuer: str, *, tenant: Hashable = None) -> DiscoverResult:
    """Read the issuer's discovery document now; ``tenant``: the bot asking, for its share of the host's slots."""
    started = time.perf_counter()
    try:
        response = await http.request("GET", discovery_url(issuer), headers={"Accept": "application/json"},
                                      tenant=tenant)
    except Exception as exc:
        if (kind := kind_of(exc)) is None:
            raise
        elapsed = (time.perf_counter() - started) * 1000
        log.info("discover: no answer", host=host_of(issuer), kind=kind.value)
        return unanswered(issuer, kind, exc, elapsed_ms=elapsed)
    return read(issuer, response.status, response.body, elapsed_ms=response.elapsed_ms)


async def answer(body: bytes, *, http: OutboundClient) -> bytes | None:
    """A gateway's request (:class:`shared.discover.DiscoverRequest`) -> its :class:`DiscoverResult`, or None when
    the read outlasts the gateway's patience (the gateway answered 503 already)."""
    request = DiscoverRequest.model_validate_json(body)
    try:
        async with asyncio.timeout(request.patience_seconds):
            result = await discover(http, request.issuer, tenant=request.bot_id)
    except TimeoutError:
        log.warning("discover outlasted its asker's patience", bot_id=str(request.bot_id))
        return None
    return result.model_dump_json().encode()
