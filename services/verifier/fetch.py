"""GET a JSON document from a business's URL (its domain whitelist, its JWKS) through the guarded
outbound client, every way it can fail said in words that name the URL's role."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable, Mapping
from typing import Any

import aiohttp

from .outbound import DestinationBlocked, HostBusy, InvalidResponse, OutboundClient, ResponseTooLarge



class FetchFailed(Exception):
    """``str(exc)``: why, e.g. "the whitelist API did not answer in time"."""


async def fetch_json(http: OutboundClient, url: str, *, what: str, headers: Mapping[str, str], tenant: Hashable) -> Any:
    """The decoded JSON of a 2xx answer to ``GET url``; ``what`` names the URL in failures
    ("the whitelist API", "the JWKS URL"); ``tenant``: the bot it is fetched for."""
    try:
        response = await http.request("GET", url, headers=dict(headers), tenant=tenant)
    except DestinationBlocked as exc:
        raise FetchFailed(f"{what}'s address is not allowed ({exc})") from None
    except HostBusy as exc:
        raise FetchFailed(f"{what} was not called: {exc}") from None
    except ResponseTooLarge:
        raise FetchFailed(f"{what}'s answer is too large") from None
    except InvalidResponse as exc:
        raise FetchFailed(f"{what}'s answer cannot be read ({exc})") from None
    except (TimeoutError, asyncio.TimeoutError):
        raise FetchFailed(f"{what} did not answer in time") from None
    except aiohttp.ClientError as exc:
        raise FetchFailed(f"could not reach {what} ({type(exc).__name__})") from None
    if not 200 <= response.status < 300:
        raise FetchFailed(f"{what} answered HTTP {response.status}")
    try:
        return json.loads(response.body)
    except (ValueError, RecursionError):
        raise FetchFailed(f"{what}'s answer is not JSON") from None
