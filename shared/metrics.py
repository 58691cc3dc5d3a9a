"""Every Prometheus metric Doorman exposes, in one place (prometheus-client).

Each process serves its own on ``/metrics``; sum across replicas in PromQL. Label sets
are bounded: the only unbounded key, the bot, is capped by :class:`BotLabel`.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)

SESSIONS_OPENED = Counter("doorman_sessions_opened_total", "Widget opens accepted (202) by the gateway")
SESSIONS_REFUSED = Counter("doorman_sessions_refused_total", "Widget opens refused by the gateway", ["reason"])
OPENS_HELD = Counter("doorman_opens_held_total",
                     "Widget opens accepted while the broker was away: their events held in the database")
OPENS_REPUBLISHED = Counter("doorman_opens_republished_total",
                            "Held widget opens published by a gateway's sweeper once the broker was back")
WAITING_STREAMS = Gauge("doorman_waiting_streams", "Widgets waiting on an outcome stream on this gateway")
OUTCOMES = Counter("doorman_outcomes_total",
                   "Sessions resolved, by outcome (verified, fallback, or ended while still pending)", ["status", "reason"])
SESSIONS_ENDED = Counter("doorman_sessions_ended_total",
                         "Sessions ended (status `ended`), by the status they had and by whom: visitor (logout) or revoked",
                         ["was", "by"])
SESSION_SECONDS = Histogram("doorman_session_seconds", "Widget open to recorded outcome", ["status"],
                            buckets=LATENCY_BUCKETS)
AUTH_CALLS = Counter("doorman_auth_calls_total", "Identity calls to businesses, by result class", ["bot", "result"])
AUTH_CALLS_WITHOUT_SLOT = Counter(
    "doorman_auth_calls_without_slot_total",
    "Identity calls not made: no call slot to the business's host came free in time (Doorman's own capacity)", ["bot"],
)
AUTH_CALL_SECONDS = Histogram("doorman_auth_call_seconds", "Identity call duration", ["bot"], buckets=LATENCY_BUCKETS)
CONSUMER_IN_FLIGHT = Gauge("doorman_consumer_in_flight", "Messages being handled", ["queue"])
RETRIES = Counter("doorman_retries_total", "Messages parked in a delay queue for a retry", ["queue"])
SKIPPED = Counter("doorman_redeliveries_skipped_total", "Redelivered or retried events found already done", ["queue"])
DEAD_LETTERS = Counter("doorman_dead_letters_total", "Messages sent to the dead-letter queue", ["queue"])
PUBLISH_SECONDS = Histogram("doorman_publish_confirm_seconds", "Publish until the broker's confirm", ["event"],
                            buckets=LATENCY_BUCKETS)
DB_POOL = Gauge("doorman_db_pool_connections", "Database pool connections", ["state"])
BATCH_ITEMS = Histogram("doorman_batch_items", "Items per flush (opens per INSERT, outcomes per message, events per transaction): one round trip each",
                        ["flush"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
ADMISSION_REFUSING = Gauge("doorman_admission_refusing", "1 while this gateway refuses new opens as busy")
ADMISSION_DELAY = Gauge("doorman_admission_pipeline_delay_seconds",
                        "Quickest open-to-outcome (less the business's call) of the last interval")
ASYNCIO_TASKS = Gauge("doorman_asyncio_tasks",
                      "asyncio tasks alive in this process, counted at each scrape (a count that only grows is a leak)")
SWEPT = Counter("doorman_sessions_swept_total", "Overdue sessions ended as internal_error by the sweeper")
# Verifying through the business's outage (services/verifier/breaker.py, grace.py). `host` is an
# Authentication URL's host:port, capped like the bot label (BotLabel) at the first 200 a process sees. A breaker
# is per bot and host; its metrics are labelled by host only (host x bot would be up to 40,000 series): which bot's
# is open, the admin API and the activity log say.
BREAKER_STATE = Gauge("doorman_breaker_state",
                      "Circuit breakers on this verifier (one per bot calling the business host) in each state",
                      ["host", "state"])
BREAKER_TRANSITIONS = Counter("doorman_breaker_transitions_total", "Circuit breaker transitions, by the state entered",
                              ["host", "to"])
BREAKER_SHORT_CIRCUITS = Counter("doorman_breaker_short_circuits_total",
                                 "Identity calls not made because the bot's circuit for the host was open", ["host"])
DEGRADED = Counter("doorman_degraded_verifications_total",
                   "Visitors verified from the grace cache while the Authentication URL was unavailable", ["bot"])
GRACE_LOOKUPS = Counter("doorman_grace_lookups_total",
                        "Grace cache lookups after an unavailable Authentication URL, by result (hit, miss, error)",
                        ["result"])


class BotLabel:
    """A bot id as a label value, for the first ``limit`` bots a process sees; ``other`` after."""

    def __init__(self, limit: int = 200) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, bot_id: object) -> str:
        key = str(bot_id)
        if key in self._seen:
            return key
        if len(self._seen) < self._limit:
            self._seen.add(key)
            return key
        return "other"


def result_class(status: int | None, reason: str | None) -> str:
    """``2xx``..``5xx`` when the business answered, else why it did not."""
    if status is not None:
        return f"{status // 100}xx"
    return {"destination_blocked": "blocked", "invalid_response": "invalid"}.get(reason or "", "unreachable")


def exposition(before: Callable[[], None] | None = None) -> tuple[bytes, str]:
    if before is not None:
        before()
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
