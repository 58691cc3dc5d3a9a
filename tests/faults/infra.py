"""Throwaway infrastructure for the fault-injection suite, all on loopback.

* :class:`RabbitNode`: a second RabbitMQ node (own name, ports, data dir, management
  plugin) started from the Debian package's scripts, as the rabbitmq user.
* :class:`RabbitCluster`: three such nodes joined in one cluster (``rabbitmqctl join_cluster``;
  they share the rabbitmq user's Erlang cookie), for losing a node under load.
* :class:`PgCluster`: a throwaway PostgreSQL cluster (initdb in a temp dir) on its own port.
* :class:`Service`: one Doorman process (`doorman gateway|verifier|contacts`) that can be
  killed with SIGKILL, stopped with SIGTERM and started again.

The shared RabbitMQ and PostgreSQL of the machine are never touched.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.waits import wait_until

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/lib/postgresql/15/bin"))
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(user: str, *cmd: str, env: dict[str, str] | None = None) -> list[str]:
    """Run ``cmd`` as ``user`` (the servers refuse to run as root)."""
    prefix = [] if os.geteuid() != 0 else ["runuser", "-u", user, "--"]
    return [*prefix, "env", *(f"{k}={v}" for k, v in (env or {}).items()), *cmd]


async def _run(cmd: list[str], timeout: float = 60) -> str:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {out.decode()[-2000:]}")
    return out.decode()


async def wait_port(port: int, *, up: bool = True, timeout: float = 60) -> None:
    async def as_wanted() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            is_up = True
        except OSError:
            is_up = False
        return is_up == up

    await wait_until(as_wanted, timeout, f"port {port} to go {'up' if up else 'down'}")


def _chown_tree(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        for p in [path, *path.rglob("*")]:
            os.chown(p, entry.pw_uid, entry.pw_gid)


class RabbitNode:
    def __init__(self) -> None:
        self.port, self.management_port, self.dist_port = free_port(), free_port(), free_port()
        self.name = f"doorman-faults-{self.port}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="doorman-rabbit-"))
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
            "log.console = false\n"
            # Queue counts in the management API every 100 ms (default 5 s), for the suite's counting.
            "collect_statistics_interval = 100\n"
        )
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        _chown_tree(self.dir, "rabbitmq")
        self._env = {
            "HOME": pwd.getpwnam("rabbitmq").pw_dir, "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"), "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"), "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
        }

        self.running = False

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def urls(self) -> str:
        """What the services are given as DOORMAN_AMQP_URL."""
        return self.url

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    async def start(self) -> None:
        await _run(_as_user("rabbitmq", str(RABBIT_BIN / "rabbitmq-server"), "-detached", env=self._env))
        self.running = True
        await wait_port(self.port, timeout=180)
        await wait_port(self.management_port, timeout=120)

    async def ctl(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 120) -> str:
        return await _run(_as_user("rabbitmq", str(RABBIT_BIN / tool), "-n", self.name, *args, env=self._env),
                          timeout=timeout)

    async def stop(self) -> None:
        await self.ctl("stop")
        self.running = False
        await wait_port(self.port, up=False)

    async def kill9(self) -> None:
        """SIGKILL the node's Erlang VM: no goodbye to its clients or its cluster."""
        pid = int((await self.ctl("eval", "list_to_integer(os:getpid()).")).strip())
        os.kill(pid, signal.SIGKILL)
        self.running = False
        await wait_port(self.port, up=False)

    async def restart(self, while_down: Callable[[], Awaitable[object]]) -> None:
        """Stop; start again once ``while_down`` returned (what must be seen while it is down)."""
        await self.stop()
        await while_down()
        await self.start()

    async def destroy(self) -> None:
        try:
            await self.stop()
        except (RuntimeError, TimeoutError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class RabbitCluster:
    """Three :class:`RabbitNode` s in one cluster. Quorum queues declared without
    ``x-quorum-initial-group-size`` (Doorman's) get a member on every node; their leader starts on
    the node of the connection that declared them (``queue_leader_locator`` client-local)."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [RabbitNode() for _ in range(size)]

    @property
    def urls(self) -> str:
        """Every node, comma-separated: what the services are given as DOORMAN_AMQP_URL."""
        return ",".join(n.url for n in self.nodes)

    @property
    def live(self) -> RabbitNode:
        return next(n for n in self.nodes if n.running)

    @property
    def url(self) -> str:
        """One live node, for the suite's own clients."""
        return self.live.url

    @property
    def management_url(self) -> str:
        return self.live.management_url

    def node(self, erlang_name: str) -> RabbitNode:
        return next(n for n in self.nodes if n.name == erlang_name)

    async def start(self) -> None:
        await asyncio.gather(*(n.start() for n in self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            await node.ctl("stop_app")
            await node.ctl("join_cluster", first.name)
            await node.ctl("start_app")
            await wait_port(node.port, timeout=120)
        status = await first.ctl("cluster_status", "--formatter", "json")
        missing = [n.name for n in self.nodes if n.name not in status]
        assert not missing, f"not clustered: {missing}"

    async def destroy(self) -> None:
        await asyncio.gather(*(n.destroy() for n in self.nodes))


class PgCluster:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="doorman-pg-"))
        _chown_tree(self.dir, "postgres")

    def url(self, database: str = "doorman") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def init(self) -> None:
        await _run(_as_user("postgres", str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                            "--auth=trust", "-E", "UTF8", "--no-sync"))

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        await _run(_as_user("postgres", str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options,
                            "-l", str(self.dir / "log"), "-w", "start"))

    async def stop(self, mode: str = "immediate") -> None:
        await _run(_as_user("postgres", str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode, "-w", "stop"))

    async def restart(self, while_down: Callable[[], Awaitable[object]]) -> None:
        """Stop (immediate: like a crash); start again once ``while_down`` returned."""
        await self.stop()
        await while_down()
        await self.start()

    async def destroy(self) -> None:
        try:
            await self.stop()
        except (RuntimeError, TimeoutError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Service:
    """One Doorman service process, logging JSON lines to its own file."""

    def __init__(self, command: str, env: dict[str, str], log_dir: Path, index: int) -> None:
        self.command = command
        self.env = env
        self.log = log_dir / f"{command}-{index}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "doorman.cli", self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def terminate(self, timeout: float = 30) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)
