"""The `doorman` command: run a service, migrate, run everything locally, or operate the queues."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

import structlog
from pydantic import ValidationError

from shared import messaging, tracing
from shared.logging import configure


QUEUES = ", ".join(messaging.WORK_QUEUES)


def _settings(cls: type) -> object:
    try:
        return cls()
    except ValidationError as exc:
        for e in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(p) for p in e["loc"]) or "settings"
            print(f"doorman: bad setting {field}: {e['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_migrate(_: argparse.Namespace) -> None:
    from doorman.migrate import migrate
    from shared.settings import DoormanSettings

    s = _settings(DoormanSettings)
    applied = asyncio.run(migrate(s.database_url.get_secret_value()))  # type: ignore[attr-defined]
    print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")


def cmd_gateway(_: argparse.Namespace) -> None:
    from services.gateway.app import SERVER_OPTIONS, init_app
    from services.gateway.listening import serve
    from services.gateway.settings import GatewaySettings

    s = _settings(GatewaySettings)
    # SERVER_OPTIONS go to each connection's request handler.
    asyncio.run(serve(init_app(s), host=s.gateway_host, port=s.gateway_port, backlog=s.gateway_backlog,
                      shutdown_timeout=10, **SERVER_OPTIONS))


def _run_worker(module: str, settings_cls: str) -> None:
    import importlib

    from shared.service import run_until_signalled

    mod = importlib.import_module(f"services.{module}.main")
    cls = getattr(importlib.import_module(f"services.{module}.settings"), settings_cls)
    s = _settings(cls)
    asyncio.run(run_until_signalled(lambda: mod.running(s, health_host=s.health_host), module,  # type: ignore[attr-defined]
                                    gc_young_threshold=s.gc_young_threshold))  # type: ignore[attr-defined]


def cmd_verifier(_: argparse.Namespace) -> None:
    _run_worker("verifier", "VerifierSettings")


def cmd_contacts(_: argparse.Namespace) -> None:
    _run_worker("contacts", "ContactsSettings")


def cmd_up(args: argparse.Namespace) -> None:
    from doorman.up import up

    asyncio.run(up(demo_port=args.demo_port))


def cmd_queues(_: argparse.Namespace) -> None:
    from doorman.ops import QueueSettings, queues

    s = _settings(QueueSettings)
    asyncio.run(queues(s))  # type: ignore[arg-type]


def cmd_dlq_replay(args: argparse.Namespace) -> None:
    from doorman.ops import replay
    from shared.settings import DoormanSettings

    s = _settings(DoormanSettings)
    asyncio.run(replay(s, args.queue))  # type: ignore[arg-type]


def _age(then: datetime | None) -> str:
    if then is None:
        return "-"
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cmd_dlq_list(_: argparse.Namespace) -> None:
    from doorman.ops import dead_letters
    from shared.settings import DoormanSettings

    s = _settings(DoormanSettings)
    found = asyncio.run(dead_letters(s))  # type: ignore[arg-type]
    print(f"{'queue':<26} {'dead letters':>12} {'oldest':>8}  dead-letter queue")
    for d in found:
        print(f"{d.queue:<26} {d.count:>12} {_age(d.oldest):>8}  {d.dead_letter_queue}")


def cmd_dlq_show(args: argparse.Namespace) -> None:
    from doorman.ops import show_dead_letters
    from shared.settings import DoormanSettings

    s = _settings(DoormanSettings)
    count, shown = asyncio.run(show_dead_letters(s, args.queue, args.limit))  # type: ignore[arg-type]
    print(f"{count} dead letter(s) in {args.queue}; showing {len(shown)} (secrets and tokens masked, session ids "
          "as session_ref; they stay in the queue)")
    for d in shown:
        when = d.dead_lettered_at.isoformat(timespec="seconds") if d.dead_lettered_at else "-"
        print(f"\n--- {d.type or '?'}  message {d.message_id or '-'}  dead-lettered {when} ({_age(d.dead_lettered_at)} ago)"
              f"  attempts {d.attempts if d.attempts is not None else '-'}  failure {d.failure or '-'}")
        print(json.dumps(d.body, indent=2, sort_keys=True, default=str) if not isinstance(d.body, str) else d.body)


def cmd_dlq_purge(args: argparse.Namespace) -> None:
    from doorman.ops import purge_dead_letters, work_queue
    from shared.settings import DoormanSettings

    s = _settings(DoormanSettings)
    work_queue(s, args.queue)  # type: ignore[arg-type]
    if not args.yes:
        print(f"doorman: purging deletes every dead letter of {args.queue} for good (see them first with "
              f"`doorman dlq show {args.queue}`); add --yes to do it", file=sys.stderr)
        raise SystemExit(2)
    purged = asyncio.run(purge_dead_letters(s, args.queue))  # type: ignore[arg-type]
    print(f"purged {purged} dead letter(s) of {args.queue}")


def cmd_dlq_ttl(_: argparse.Namespace) -> None:
    from doorman.ops import set_dead_letter_ttl
    from shared.settings import DoormanSettings

    s = _settings(DoormanSettings)
    done = asyncio.run(set_dead_letter_ttl(s))  # type: ignore[arg-type]
    print(f"dead letters ({done.policy.pattern}) expire after {s.dead_letter_ttl_days:g} day(s): "  # type: ignore[attr-defined]
          f"policy {done.policy.name} set with {done.set_with}; {done.requeued} waiting re-queued to expire from now")


def cmd_secrets_rotate(_: argparse.Namespace) -> None:
    from doorman.ops import rotate_secrets
    from shared.settings import SecretKeySettings

    s = _settings(SecretKeySettings)
    done = asyncio.run(rotate_secrets(s))  # type: ignore[arg-type]
    print(f"re-encrypted the secrets of {done.rotated} bot(s) with the first key")
    if done.unreadable:
        print("no key decrypts these (left as they are; set them again in the bot's settings):", file=sys.stderr)
        for item in done.unreadable:
            print(f"  {item}", file=sys.stderr)
        raise SystemExit(1)


def cmd_docs(args: argparse.Namespace) -> None:
    from doorman.docs import stale, write

    if args.check:
        if pages := stale():
            print(f"out of date: {', '.join(f'docs/{p}' for p in pages)} (run `doorman docs`)", file=sys.stderr)
            raise SystemExit(1)
        print("docs/api.md and docs/settings.md match the code")
        return
    changed = write()
    print(f"rewrote {', '.join(f'docs/{p}' for p in changed)}" if changed else "docs/api.md and docs/settings.md were current")


def _use_uvloop() -> None:
    """uvloop's event loop (a dependency; skipped if missing): cheaper I/O per message."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="doorman", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database schema").set_defaults(func=cmd_migrate)
    sub.add_parser("gateway", help="run the HTTP gateway").set_defaults(func=cmd_gateway)
    sub.add_parser("verifier", help="run a verifier worker").set_defaults(func=cmd_verifier)
    sub.add_parser("contacts", help="run a contacts worker").set_defaults(func=cmd_contacts)
    up = sub.add_parser("up", help="run everything locally with a demo customer API")
    up.add_argument("--demo-port", type=int, default=8090)
    up.set_defaults(func=cmd_up)
    sub.add_parser("queues", help="show queue depths and dead letters").set_defaults(func=cmd_queues)
    dlq = sub.add_parser(
        "dlq", help="dead-letter queues: list, show, replay, purge, ttl",
        description=f"What a stage gave up on waits in its work queue's dead-letter queue. QUEUE is a work queue: {QUEUES}.",
    ).add_subparsers(dest="dlq_command", required=True)
    dlq.add_parser("list", help="each dead-letter queue, how many wait and the age of the oldest").set_defaults(
        func=cmd_dlq_list)
    show = dlq.add_parser("show", help="print a queue's dead letters, secrets and tokens masked (they stay queued)")
    show.add_argument("queue", metavar="QUEUE", help=f"one of {QUEUES}")
    show.add_argument("--limit", type=int, default=10, help="at most this many (default 10)")
    show.set_defaults(func=cmd_dlq_show)
    replay = dlq.add_parser("replay", help="move a queue's dead letters back onto it (work done already is skipped)")
    replay.add_argument("queue", metavar="QUEUE", help=f"one of {QUEUES}")
    replay.set_defaults(func=cmd_dlq_replay)
    purge = dlq.add_parser("purge", help="delete a queue's dead letters for good (needs --yes)")
    purge.add_argument("queue", metavar="QUEUE", help=f"one of {QUEUES}")
    purge.add_argument("--yes", action="store_true", help="yes, delete them")
    purge.set_defaults(func=cmd_dlq_purge)
    dlq.add_parser("ttl", help="make dead letters expire after DOORMAN_DEAD_LETTER_TTL_DAYS (a broker policy)").set_defaults(
        func=cmd_dlq_ttl)

    keys = sub.add_parser("secrets", help="encryption keys").add_subparsers(dest="secrets_command", required=True)
    keys.add_parser("rotate", help=(
        "re-encrypt every stored secret (header tokens, webhook signing secrets, token secrets, OIDC client secrets) "
        "with the first "
        "DOORMAN_SECRET_KEY key")).set_defaults(func=cmd_secrets_rotate)

    docs = sub.add_parser("docs", help="write docs/api.md (from the OpenAPI document) and docs/settings.md (from the settings)")
    docs.add_argument("--check", action="store_true", help="write nothing; exit 1 if either is out of date")
    docs.set_defaults(func=cmd_docs)

    args = parser.parse_args(argv)
    _use_uvloop()
    from shared.settings import DoormanSettings

    try:
        base = DoormanSettings()
        configure(base.log_level, base.log_json)
        tracing.configure(args.command, base.tracing and args.command in ("gateway", "verifier", "contacts"))
    except ValidationError:
        configure()
    structlog.contextvars.clear_contextvars()
    args.func(args)


if __name__ == "__main__":
    main()
