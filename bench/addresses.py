"""``python -m bench.addresses``: the gateway's POST when every open comes from another address.

The benchmark's load comes from 127.0.0.1 only, so per-address state (the rate-limit counters) holds one
entry there. Here a gateway alone (verifier and contacts not started: the queue absorbs the opens) trusts
``X-Forwarded-For`` and takes ``--opens`` opens, each from its own address, 64 at a time through aiohttp;
it prints opens per second and the gateway's CPU per open (from /proc), after a warm-up of 3,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from .procs import ROOT, cpu_seconds
from .stack import Stack


def address(n: int) -> str:
    return f"10.{n // 62_500 % 250}.{n // 250 % 250}.{n % 250 + 1}"


async def run(opens: int, concurrency: int = 64) -> dict[str, object]:
    log_dir = ROOT / "bench" / "results" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(log_dir)
    await stack.setup()
    try:
        gateway = await stack.start("gateway", {"DOORMAN_TRUST_FORWARDED_FOR": "true"})
        await stack.wait_gateway()
        bot = await stack.create_bot("addresses", "http://127.0.0.1:9/auth")
        gate = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
            async def one(n: int) -> int:
                async with gate, http.post(f"{stack.gateway_url}/v1/widget/sessions", json={"bot_id": bot},
                                           headers={"X-Forwarded-For": address(n)}) as resp:
                    await resp.read()
                    return resp.status

            await asyncio.gather(*(one(n) for n in range(3000)))  # warm-up, addresses of their own
            cpu0, t0 = cpu_seconds(gateway.pid), time.monotonic()
            statuses = await asyncio.gather(*(one(n) for n in range(3000, 3000 + opens)))
            cpu1, t1 = cpu_seconds(gateway.pid), time.monotonic()
        return {"opens": opens, "distinct_addresses": opens, "per_second": round(opens / (t1 - t0)),
                "gateway_cpu_ms_per_open": round((cpu1 - cpu0) / opens * 1000, 3),
                "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))}}
    finally:
        await stack.teardown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opens", type=int, default=30_000, help="opens measured, each from its own address")
    print(json.dumps(asyncio.run(run(parser.parse_args().opens))))


if __name__ == "__main__":
    main()
