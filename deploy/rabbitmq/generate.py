"""Write deploy/rabbitmq/definitions.json from what the services declare (``doorman.ops.declare_all``).

    python deploy/rabbitmq/generate.py            # rewrite definitions.json
    python deploy/rabbitmq/generate.py --check    # exit 1 if the committed file is stale

The exchanges, queues (with their exact x-arguments) and bindings are not restated here: the
script runs the services' own ``declare()`` against a recording stand-in for an aio-pika
channel, so the file says exactly what every service declares at start. A queue whose
arguments differ from the declared ones makes the services fail with PRECONDITION_FAILED,
so regenerate whenever ``shared/messaging.py`` changes (tests/unit/test_deploy.py checks it).

Operational settings that must not be queue arguments (the services would then see
inequivalent arguments) are policies, declared in ``doorman.ops.policies``: the leader locator, and
the dead letters' expiry (``DOORMAN_DEAD_LETTER_TTL_DAYS``; ``doorman dlq ttl`` sets it on a running
broker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from doorman.ops import declare_all, policies  # noqa: E402
from shared import messaging  # noqa: E402
from shared.settings import DoormanSettings  # noqa: E402

OUTPUT = Path(__file__).with_name("definitions.json")
PREFIX = "doorman"  # DOORMAN_AMQP_PREFIX's default
VHOST = "doorman"  # the vhost in DOORMAN_AMQP_URL (amqp://user:pass@host:5672/doorman)
TTL_DAYS: float = DoormanSettings.model_fields["dead_letter_ttl_days"].default  # DOORMAN_DEAD_LETTER_TTL_DAYS's


def policy_definitions(prefix: str, vhost: str, dead_letter_ttl_days: float) -> list[dict[str, Any]]:
    """``doorman.ops.policies`` as definitions: at most one applies to a queue (the highest priority)."""
    return [{"vhost": vhost, "name": p.name, "pattern": p.pattern, "apply-to": p.apply_to, "priority": p.priority,
             "definition": p.definition} for p in policies(prefix, dead_letter_ttl_days)]


class _Queue:
    def __init__(self, recorder: "_Channel", name: str) -> None:
        self._recorder, self.name = recorder, name

    async def bind(self, exchange: "_Exchange", routing_key: str | None = None, *,
                   arguments: dict[str, Any] | None = None, timeout: float | None = None) -> None:
        self._recorder.bindings.append({
            "source": exchange.name, "destination": self.name, "destination_type": "queue",
            "routing_key": routing_key if routing_key is not None else self.name,
            "arguments": dict(arguments or {}),
        })


class _Exchange:
    def __init__(self, name: str) -> None:
        self.name = name


class _Channel:
    """Records what ``messaging.declare`` asks of an aio-pika channel (same keyword signatures)."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []
        self.queues: list[dict[str, Any]] = []
        self.bindings: list[dict[str, Any]] = []

    async def declare_exchange(self, name: str, type: Any = "direct", *, durable: bool = False,  # noqa: A002
                               auto_delete: bool = False, internal: bool = False, passive: bool = False,
                               arguments: dict[str, Any] | None = None, timeout: float | None = None) -> _Exchange:
        if passive:
            raise AssertionError(f"passive declare of exchange {name} cannot be turned into a definition")
        self.exchanges.append({
            "name": name, "type": getattr(type, "value", type), "durable": durable,
            "auto_delete": auto_delete, "internal": internal, "arguments": dict(arguments or {}),
        })
        return _Exchange(name)

    async def declare_queue(self, name: str | None = None, *, durable: bool = False, exclusive: bool = False,
                            passive: bool = False, auto_delete: bool = False,
                            arguments: dict[str, Any] | None = None, timeout: float | None = None) -> _Queue:
        if not name or exclusive or passive:
            raise AssertionError(f"queue {name!r}: only named, non-exclusive queues belong in definitions")
        self.queues.append({"name": name, "durable": durable, "auto_delete": auto_delete,
                            "arguments": dict(arguments or {})})
        return _Queue(self, name)


def declared(prefix: str = PREFIX) -> _Channel:
    """What every service declares at start for ``prefix``."""
    channel = _Channel()
    asyncio.run(declare_all(channel, messaging.Topology(prefix)))  # type: ignore[arg-type]
    return channel


def definitions(prefix: str = PREFIX, vhost: str = VHOST, dead_letter_ttl_days: float = TTL_DAYS) -> dict[str, Any]:
    channel = declared(prefix)
    with_vhost = lambda items: [{**item, "vhost": vhost} for item in items]  # noqa: E731
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": with_vhost(channel.exchanges),
        "queues": with_vhost(channel.queues),
        "bindings": with_vhost(channel.bindings),
        "policies": policy_definitions(prefix, vhost, dead_letter_ttl_days),
    }


def render(prefix: str = PREFIX, vhost: str = VHOST, dead_letter_ttl_days: float = TTL_DAYS) -> str:
    return json.dumps(definitions(prefix, vhost, dead_letter_ttl_days), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default=PREFIX, help="DOORMAN_AMQP_PREFIX (default: %(default)s)")
    parser.add_argument("--vhost", default=VHOST, help="virtual host (default: %(default)s)")
    parser.add_argument("--dead-letter-ttl-days", type=float, default=TTL_DAYS,
                        help="DOORMAN_DEAD_LETTER_TTL_DAYS (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: %(default)s")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the file differs")
    args = parser.parse_args(argv)
    text = render(args.prefix, args.vhost, args.dead_letter_ttl_days)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python deploy/rabbitmq/generate.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
