"""Typed application state."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from shared.crypto import Secrets
from shared.destinations import Destinations
from shared.messaging import Publisher
from shared.rpc import Asker

from .widget.opening import Opens, Retractions
from .widget.outcomes import OutcomeHub
from .widget.views import ViewReader
from .widget.ratelimit import WidgetLimits
from .settings import GatewaySettings

SETTINGS = web.AppKey("settings", GatewaySettings)
POOL = web.AppKey("pool", asyncpg.Pool)
PUBLISH = web.AppKey("publish", Publisher)
HUB = web.AppKey("hub", OutcomeHub)
SECRETS = web.AppKey("secrets", Secrets)
DESTINATIONS = web.AppKey("destinations", Destinations)  # the URLs a verifier would call: checked when saved
ASK = web.AppKey("ask", Asker)  # requests to the verifiers (the Testing panel, back-channel logout tokens)
LIMITS = web.AppKey("limits", WidgetLimits)
OPENS = web.AppKey("opens", Opens)  # hand an open in; see .opening
VIEWS = web.AppKey("views", ViewReader)  # a session's view, read with the other requests' (.views.view_reader)
RETRACTIONS = web.AppKey("retractions", Retractions)  # opens answered 503 whose rows may exist: deleted when the database answers
