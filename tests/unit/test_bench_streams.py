"""Test 6's plain reference (bench/plain.py) holds each stream until its connection goes, and the report
sets the gateway's streams beside it (bench/report.py), on synthetic data."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from bench.client import Conn, hold_streams
from bench.plain import make_app
from bench.report import rows
from tests.waits import wait_until


async def _held(port: int) -> int:
    conn = await Conn.open("127.0.0.1", port)
    try:
        return json.loads((await conn.request(b"GET", b"/held"))[1])["held"]
    finally:
        conn.close()


async def _is_five(port: int) -> bool:
    return await _held(port) == 5


async def test_the_plain_reference_holds_every_stream_and_sends_nothing_until_it_goes() -> None:
    runner = web.AppRunner(make_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        conns, problems, _ = await hold_streams("127.0.0.1", port, [f"s{i}" for i in range(5)])
        await wait_until(lambda: _is_five(port), 5, "5 streams held")
        assert not problems
        with pytest.raises(TimeoutError):  # nothing sent: a widget still waiting
            async with asyncio.timeout(0.2):
                await conns[0].reader.read(1)
        for c in conns:
            c.close()
    finally:
        await runner.cleanup()


def test_the_report_sets_the_gateways_streams_beside_plain_aiohttp() -> None:
    streams = {"streams": 10_000, "open": 10_000, "gateway_rss_before_mb": 80.0, "gateway_rss_peak_mb": 190.0,
               "gateway_kb_per_stream": 11.3, "gateway_kb_per_stream_above_plain": 3.1,
               "cpu_cores_while_holding": {"gateway": 0.01},
               "plain": {"held": 10_000, "rss_before_mb": 30.5, "rss_peak_mb": 110.6, "kb_per_stream": 8.2}}
    found = {m.strip(): (v, g, ok) for t, m, v, g, ok in rows({"streams": streams, "ratios": {}}) if t == "6"}
    assert found["gateway RSS with 10,000/10,000 waiting SSE streams, MB"] == ("190.0", "<= 150 (10,000)", False)
    assert found["plain aiohttp holding 10,000 streams: RSS at rest / peak MB; KB per stream"][0] == "30.5 / 110.6; 8.20"
    assert found["gateway at rest above plain, MB; KB per stream above plain"][0] == "49.5; 3.10"
