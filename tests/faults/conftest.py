"""The fault suite's own RabbitMQ node and PostgreSQL cluster, and its report."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from doorman.migrate import migrate
from tests.faults.infra import PgCluster, RabbitCluster, RabbitNode
from tests.faults.scenario import Result, save, table

RESULTS: list[Result] = []
REPORT = Path(__file__).resolve().parents[2] / ".fault-report.json"


@pytest.fixture(scope="session")
async def rabbit() -> AsyncIterator[RabbitNode]:
    node = RabbitNode()
    await node.start()
    yield node
    await node.destroy()


@pytest.fixture(scope="session")
async def rabbit_cluster() -> AsyncIterator[RabbitCluster]:
    """Three RabbitMQ nodes in one cluster (slow to boot on two cores: the long run only)."""
    cluster = RabbitCluster(3)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.destroy()


@pytest.fixture(scope="session")
async def pg() -> AsyncIterator[PgCluster]:
    cluster = PgCluster()
    await cluster.init()
    await cluster.start()
    yield cluster
    await cluster.destroy()


@pytest.fixture(scope="session")
async def fault_database(pg: PgCluster) -> str:
    name = f"faults_{secrets.token_hex(3)}"
    await migrate(pg.url(name))
    return name


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.write_sep("=", "fault injection: sessions accepted vs outcomes vs contacts")
        terminalreporter.write_line(table(RESULTS))
        save(RESULTS, REPORT)
        terminalreporter.write_line(f"(also in {REPORT})")
