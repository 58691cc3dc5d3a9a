"""``python -m bench [--quick] [--only 1,2,...] [--profile]``: Doorman's benchmark, one run, one table.

Starts a fake customer API, Doorman's three services (own database and queue prefix) and the
references it compares against, drives them from this process, prints the table and writes
bench/results/latest.json. ``--profile`` instead records py-spy profiles of the services under
load into bench/results/ and prints their summaries. Everything started here is stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

from . import machine, report, scenarios
from .client import CLIENT_PATHS, closed_loop
from .procs import ROOT, python_child
from .scenarios import Context, Plan, say
from .stack import Stack, free_port, overrides

RESULTS = ROOT / "bench" / "results"
TESTS = ("1", "2", "3", "4", "5", "6", "7", "8")


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # children (the gateway) inherit it
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan.quick() if args.quick else Plan()
    only = {s.strip() for s in args.only.split(",")} if args.only else set(TESTS)
    started = time.monotonic()
    log_dir = RESULTS / "logs"
    for old in log_dir.glob("*.log"):  # the previous run's service logs (all written by this harness)
        old.unlink()
    stack = Stack(log_dir)
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else ("profile" if args.profile else "full"), "plan": plan.__dict__,
        "machine": machine.describe(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "doorman_overrides": overrides(), "nofile": raise_nofile(), "ratios": {},
        "client": "bench.client (asyncio streams, " + ("uvloop" if "uvloop" in type(asyncio.get_event_loop_policy()).__module__ else "asyncio") + ")",
    }
    fast_port, hang_port = free_port(), free_port()
    customer = python_child("customer", ["bench.customer", str(fast_port), str(hang_port)], stack.env(), log_dir)
    await customer.start()
    ctx = Context(plan, stack, f"http://127.0.0.1:{fast_port}/auth", f"http://127.0.0.1:{hang_port}/auth", results=results, customer=customer)
    try:
        await wait_port(fast_port)
        await wait_port(hang_port)
        say(f"database {stack.database}, queue prefix {stack.prefix}, logs in {log_dir.relative_to(ROOT)}")
        await stack.setup()
        await stack.start("gateway")
        await stack.wait_gateway()
        await stack.scale(verifiers=1, contacts=1)
        results["rss_rest_mb"] = ctx.rss()
        ctx.bots = [await stack.create_bot(f"bench {i}", ctx.customer_fast) for i in range(plan.bots)]
        say("warm-up")
        pool = ctx.gateway_pool()
        await closed_loop(pool, ctx.e2e_op(), concurrency=32, seconds=2, warmup=0.5)
        pool.close()
        await stack.quiet()

        if args.profile:
            await profile(ctx, args)
        else:
            if "1" in only:
                results["post"] = await scenarios.post_throughput(ctx)
            if "2" in only:
                results["e2e"] = await scenarios.end_to_end(ctx)
                results["ratios"]["e2e_signed_token_vs_callback"] = round(
                    results["e2e"]["saturation_signed_token"]["per_second"] / results["e2e"]["saturation"]["per_second"], 3)
                if oidc_sat := results["e2e"]["saturation_oidc"]:
                    results["ratios"]["e2e_oidc_userinfo_vs_callback"] = round(
                        oidc_sat["per_second"] / results["e2e"]["saturation"]["per_second"], 3)
            if "3" in only:
                results["direct"] = await scenarios.direct_baseline(ctx)
                if "e2e" in results:
                    results["ratios"]["e2e_vs_direct"] = round(
                        results["e2e"]["saturation"]["per_second"] / results["direct"]["saturation"]["per_second"], 3)
            if "7" in only:
                results["scale"] = await scenarios.scale_out(ctx)
                if "e2e" in results:
                    results["ratios"]["scale_out"] = round(
                        results["scale"]["per_second"] / results["e2e"]["saturation"]["per_second"], 3)
            if "4" in only:
                results["drain"] = await scenarios.backlog_drain(ctx)
            if "5" in only:
                rate = plan.fixed_rate
                if args.isolation_rate:
                    rate = args.isolation_rate
                elif "e2e" in results:  # keep the others' traffic below saturation, so a rise is the hang's doing
                    rate = min(rate, max(20.0, round(results["e2e"]["saturation"]["per_second"] * 0.5, -1)))
                results["isolation"] = await scenarios.isolation(ctx, rate)
            if "6" in only:
                results["streams"] = await scenarios.waiting_streams(ctx)
            if "8" in only:
                rate, source = overload_rate(args, plan, results)
                results["overload"] = {}
                for path in args.overload_paths:
                    results["overload"][path] = await scenarios.overload(ctx, rate, source, path)
                if "e2e" in results:
                    results["ratios"]["overload_goodput_vs_e2e"] = {
                        path: round(o["goodput_per_second"] / results["e2e"]["saturation"]["per_second"], 3)
                        for path, o in results["overload"].items()}
    finally:
        say("stopping everything this run started")
        try:
            await stack.teardown(keep_database=args.keep_database)
        finally:
            await customer.stop()
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def overload_rate(args: argparse.Namespace, plan: Plan, results: dict[str, Any]) -> tuple[float, str]:
    """Test 8's offered rate and where it came from: ``--overload-rate``, else twice test 2's
    saturation measured in this run, else the plan's default."""
    if args.overload_rate:
        return args.overload_rate, "--overload-rate"
    if "e2e" in results and results["e2e"]["saturation"]["per_second"]:
        factor = plan.overload_factor
        return round(results["e2e"]["saturation"]["per_second"] * factor, 1), f"{factor:g}x test 2's saturation"
    return plan.overload_rate, "default (test 2 did not run)"


async def profile(ctx: Context, args: argparse.Namespace) -> None:
    from . import profile as prof
    from .client import post_op

    seconds = 6 if args.quick else 10
    stack = ctx.stack
    pids = {r: stack.running(r)[0].pid for r in ("gateway", "verifier", "contacts")}
    summaries: dict[str, Any] = {}

    async def phase(name: str, load, targets: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
        say(f"profile '{name}': {seconds} s of load, py-spy on {', '.join(targets)}")
        task = asyncio.create_task(load())
        await asyncio.sleep(1.0)  # let the load ramp up first
        files = await prof.record(targets, seconds, RESULTS, name)
        run = await task
        summaries[name] = {"load": run.summary() if run else None,
                           "profiles": {k: prof.summarise(p) for k, p in files.items()}}
        await stack.quiet(timeout=180)

    async def e2e():  # type: ignore[no-untyped-def]
        pool = ctx.gateway_pool()
        try:
            return await closed_loop(pool, ctx.e2e_op(), concurrency=ctx.plan.e2e_concurrency, seconds=seconds + 1, warmup=0.5)
        finally:
            pool.close()

    async def post():  # type: ignore[no-untyped-def]
        pool = ctx.gateway_pool()
        try:
            return await closed_loop(pool, post_op(b"/v1/widget/sessions", ctx.bots[0]),
                                     concurrency=ctx.plan.post_concurrency, seconds=seconds + 1, warmup=0.5)
        finally:
            pool.close()

    await phase("e2e", e2e, pids)
    await phase("post", post, {"gateway": pids["gateway"]})

    say(f"profile 'drain': py-spy on the contacts service working off {ctx.plan.drain_events} queued identities")
    recording: list[asyncio.Task[dict[str, Path]]] = []
    drain = await scenarios.backlog_drain(ctx, on_start=lambda child: recording.append(asyncio.create_task(
        prof.record({"contacts": child.pid}, seconds, RESULTS, "drain"))))
    files = await recording[0]
    summaries["drain"] = {"load": drain, "profiles": {k: prof.summarise(p) for k, p in files.items()}}
    ctx.results["profiles"] = summaries
    text = "\n\n".join(f"== {phase_name} ==\n" + "\n\n".join(prof.render(s) for s in v["profiles"].values())
                       for phase_name, v in summaries.items())
    (RESULTS / "profile-summary.txt").write_text(text + "\n")
    print(text)


def _client_paths(text: str) -> list[str]:
    paths = [p.strip() for p in text.split(",") if p.strip()]
    if not paths or set(paths) - set(CLIENT_PATHS):
        raise argparse.ArgumentTypeError(f"client paths are {', '.join(CLIENT_PATHS)}")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Doorman's benchmark: one run, one table (bench/results/latest.json).")
    parser.add_argument("--quick", action="store_true", help="about two minutes: shorter phases, 1,000 streams")
    parser.add_argument("--only", help="comma-separated test numbers to run (1-8), e.g. --only 2,5")
    parser.add_argument("--profile", action="store_true", help="record py-spy profiles under load instead")
    parser.add_argument("--isolation-rate", type=float,
                        help="opens/s for test 5 (default: half the measured e2e saturation, at most 300)")
    parser.add_argument("--overload-rate", type=float,
                        help="opens/s for test 8 (default: twice the e2e saturation measured by test 2, "
                             "700 when test 2 does not run)")
    parser.add_argument("--overload-paths", default=",".join(CLIENT_PATHS), type=_client_paths,
                        help="test 8's client paths, comma-separated, each its own overload run (default: "
                             "wait,sse,poll: POST ?wait=3 as widget.js, POST then the stream, POST then polling GET)")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the run's database")
    parser.add_argument("--output", type=Path, help="default: bench/results/latest.json (profile.json with --profile)")
    args = parser.parse_args()
    if args.only and (unknown := {t.strip() for t in args.only.split(",")} - set(TESTS)):
        parser.error(f"--only: no test {', '.join(sorted(unknown))} (tests are {', '.join(TESTS)})")
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.output is None:
        args.output = RESULTS / ("profile.json" if args.profile else "latest.json")
    results = asyncio.run(run(args))
    if not args.profile:
        results["targets_met"] = report.targets(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(report.table(results))
    print(f"\n{results['seconds']} s; results in {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")


if __name__ == "__main__":
    main()
