"""``scripts/ensure-services`` on a bare machine, played with stand-in commands.

The machines this runs on always have RabbitMQ and PostgreSQL, so the install branch is tested with
stand-ins on PATH: an ``apt-get`` that records what it is asked and "installs" a ``pg_ctlcluster`` and
a ``rabbitmq-server`` which, when started, listen on the ports the script waits for. The real
``apt-get``, ``pg_ctlcluster`` and ``rabbitmq-server`` are kept off PATH.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYTHON = getattr(sys, "_base_executable", sys.executable)  # the interpreter itself, not a venv's or a shim
ROOT = Path(__file__).resolve().parents[2]
SYSTEM_TOOLS = ("bash", "cat", "ls", "head", "mv", "seq", "sleep", "id", "printf", "env", "mkdir", "chmod", "timeout",
                "od", "kill")

LISTENER = 'exec python3 -c "import socket,time; s=socket.socket(); s.bind((\'127.0.0.1\', $PORT)); s.listen(); time.sleep(60)"'
# A broker: the first byte of Connection.Start (a method frame) answers the AMQP protocol header.
BROKER = ('exec python3 -c "import socket,time\ns=socket.socket(); s.bind((\'127.0.0.1\', $PORT)); s.listen()\n'
          'while True:\n c=s.accept()[0]; c.recv(8); c.sendall(bytes([1])); c.close()"')

APT_GET = """\
#!/usr/bin/env bash
echo "apt-get $*" >> "$CALLS"
[ "$1" = install ] || exit 0
for pkg in "$@"; do
  case "$pkg" in
    postgresql)
      mkdir -p "$DOORMAN_PG_ETC/15/main"
      echo "local all postgres peer" > "$DOORMAN_PG_ETC/15/main/pg_hba.conf"
      cat > "$STANDINS/pg_ctlcluster" <<'EOF'
#!/usr/bin/env bash
echo "pg_ctlcluster $*" >> "$CALLS"
if [ "$4" = start ]; then PORT=$DOORMAN_PG_PORT; (LISTENER) >/dev/null 2>&1 & echo $! >> "$PIDS"; fi
EOF
      chmod +x "$STANDINS/pg_ctlcluster";;
    rabbitmq-server)
      cat > "$STANDINS/rabbitmq-server" <<'EOF'
#!/usr/bin/env bash
echo "rabbitmq-server $*" >> "$CALLS"
PORT=$DOORMAN_AMQP_PORT; (BROKER) >/dev/null 2>&1 & echo $! >> "$PIDS"
EOF
      chmod +x "$STANDINS/rabbitmq-server";;
    redis-server)
      cat > "$STANDINS/redis-server" <<'EOF'
#!/usr/bin/env bash
echo "redis-server $*" >> "$CALLS"
PORT=$DOORMAN_REDIS_PORT; (LISTENER) >/dev/null 2>&1 & echo $! >> "$PIDS"
EOF
      chmod +x "$STANDINS/redis-server";;
  esac
done
""".replace("LISTENER", LISTENER).replace("BROKER", BROKER)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bare_machine(tmp_path: Path) -> dict[str, str]:
    standins, system = tmp_path / "standins", tmp_path / "system"
    standins.mkdir()
    system.mkdir()
    for tool in SYSTEM_TOOLS:
        if found := shutil.which(tool):
            (system / tool).symlink_to(found)
    (system / "python3").symlink_to(PYTHON)
    (standins / "apt-get").write_text(textwrap.dedent(APT_GET))
    (standins / "apt-get").chmod(0o755)
    return {
        "PATH": f"{standins}:{system}", "STANDINS": str(standins), "CALLS": str(tmp_path / "calls"),
        "PIDS": str(tmp_path / "pids"), "DOORMAN_PG_ETC": str(tmp_path / "etc-postgresql"),
        "DOORMAN_PG_PORT": str(_free_port()), "DOORMAN_AMQP_PORT": str(_free_port()),
        "DOORMAN_REDIS_PORT": str(_free_port()), "HOME": str(tmp_path),
        "DOORMAN_PYTHON": PYTHON,
    }


def _listener(port: int) -> subprocess.Popen[str]:
    """A process listening on 127.0.0.1:``port`` that answers nothing; returned once it listens."""
    proc = subprocess.Popen([PYTHON, "-c", "import socket,time; s=socket.socket(); "
                             f"s.bind(('127.0.0.1', {port})); s.listen(); print('up', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    return proc


def _stop_started(env: dict[str, str]) -> None:
    """Stop what the stand-in services started (their pids in $PIDS)."""
    pids = Path(env["PIDS"])
    for pid in pids.read_text().split() if pids.exists() else []:
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / "ensure-services")], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="the install branch runs apt-get as root (sudo otherwise)")
def test_a_bare_machine_gets_all_three_installed_configured_and_started(bare_machine: dict[str, str]) -> None:
    try:
        first = _run(bare_machine)
        assert first.returncode == 0, first.stderr
        calls = Path(bare_machine["CALLS"]).read_text().splitlines()
        assert calls[0] == "apt-get update -qq"
        assert calls[1] == "apt-get install -y -qq postgresql rabbitmq-server redis-server"
        assert "pg_ctlcluster --skip-systemctl-redirect 15 main start" in calls
        assert "rabbitmq-server -detached" in calls
        port = bare_machine["DOORMAN_REDIS_PORT"]
        assert f"redis-server --daemonize yes --bind 127.0.0.1 --port {port} --save  --appendonly no" in calls
        hba = (Path(bare_machine["DOORMAN_PG_ETC"]) / "15" / "main" / "pg_hba.conf").read_text().splitlines()
        # Trust for the local postgres user comes first (pg_hba is first match), the package's lines stay.
        assert hba[1:4] == ["host all postgres 127.0.0.1/32 trust", "host all postgres ::1/128 trust",
                            "local all postgres peer"]

        # Run again: all installed and up; nothing is installed, configured or started twice.
        second = _run(bare_machine)
        assert second.returncode == 0, second.stderr
        assert Path(bare_machine["CALLS"]).read_text().splitlines() == calls
        assert (Path(bare_machine["DOORMAN_PG_ETC"]) / "15" / "main" / "pg_hba.conf").read_text().splitlines() == hba
    finally:
        _stop_started(bare_machine)


def test_a_machine_with_all_three_running_is_left_alone(bare_machine: dict[str, str]) -> None:
    """This machine: RabbitMQ, PostgreSQL and Redis installed and answering on their usual ports."""
    env = {**os.environ, "CALLS": bare_machine["CALLS"]}
    done = subprocess.run([str(ROOT / "scripts" / "ensure-services")], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and not Path(bare_machine["CALLS"]).exists()


# rabbitmqctl stop: the silent broker (the listener the test started, its pid in $SILENT) goes away.
RABBITMQCTL = """\
#!/usr/bin/env bash
echo "rabbitmqctl $*" >> "$CALLS"
[ "$1" = stop ] && kill "$(cat "$SILENT")"
"""


def test_a_broker_that_takes_connections_but_answers_nothing_is_restarted(bare_machine: dict[str, str]) -> None:
    """RabbitMQ's port open, its AMQP handshake unanswered: the script stops it and starts it again."""
    standins = Path(bare_machine["STANDINS"])
    for name, text in (("rabbitmqctl", RABBITMQCTL),
                       ("rabbitmq-server", APT_GET.split("cat > \"$STANDINS/rabbitmq-server\" <<'EOF'\n")[1]
                        .split("EOF")[0].replace("LISTENER", LISTENER).replace("BROKER", BROKER))):
        (standins / name).write_text(text)
        (standins / name).chmod(0o755)
    for tool in ("pg_ctlcluster", "redis-server"):
        (standins / tool).write_text("#!/usr/bin/env bash\n")
        (standins / tool).chmod(0o755)
    env = {**bare_machine, "SILENT": str(Path(bare_machine["PIDS"]).with_name("silent")),
           "DOORMAN_AMQP_HANDSHAKE_SECONDS": "1"}
    silent = _listener(int(env["DOORMAN_AMQP_PORT"]))
    listeners = [_listener(int(env[name])) for name in ("DOORMAN_PG_PORT", "DOORMAN_REDIS_PORT")]
    try:
        Path(env["SILENT"]).write_text(str(silent.pid))
        done = _run(env)
        assert done.returncode == 0, done.stderr
        assert "does not answer the AMQP handshake within 1 s: restarting it" in done.stdout
        assert Path(env["CALLS"]).read_text().splitlines() == ["rabbitmqctl stop", "rabbitmq-server -detached"]
        assert _run(env).stdout == ""  # the new one answers: left alone
    finally:
        for proc in (silent, *listeners):
            proc.kill()
        _stop_started(env)


BROWSER_APT_GET = """\
#!/usr/bin/env bash
echo "apt-get $*" >> "$CALLS"
[ "$1" = install ] || exit 0
for pkg in "$@"; do
  case "$pkg" in
    chromium) printf '#!/usr/bin/env bash\\necho Chromium 1.0\\n' > "$DOORMAN_CHROMIUM"; chmod +x "$DOORMAN_CHROMIUM";;
    libatomic1) : > "$STANDINS/libatomic.so.1";;
  esac
done
"""

# A virtualenv's interpreter whose Playwright driver starts only once libatomic.so.1 is there (as on a bare Debian).
PYTHON_WITH_PLAYWRIGHT = """\
#!/usr/bin/env bash
echo "python $*" >> "$CALLS"
[ "$*" = "-m playwright --version" ] && [ -e "$STANDINS/libatomic.so.1" ] && { echo "Version 1.0"; exit 0; }
echo "error while loading shared libraries: libatomic.so.1" >&2; exit 127
"""


@pytest.fixture
def bare_browser_machine(bare_machine: dict[str, str], tmp_path: Path) -> dict[str, str]:
    standins = Path(bare_machine["STANDINS"])
    for name, text in (("apt-get", BROWSER_APT_GET), ("venv-python", PYTHON_WITH_PLAYWRIGHT)):
        (standins / name).write_text(text)
        (standins / name).chmod(0o755)
    return {**bare_machine, "DOORMAN_CHROMIUM": str(tmp_path / "chromium")}


def _browser(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / "ensure-browser"), str(Path(env["STANDINS"]) / "venv-python")],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="the install branch runs apt-get as root (sudo otherwise)")
def test_a_bare_machine_gets_chromium_and_what_playwrights_driver_needs(bare_browser_machine: dict[str, str]) -> None:
    first = _browser(bare_browser_machine)
    assert first.returncode == 0, first.stderr
    calls = Path(bare_browser_machine["CALLS"]).read_text().splitlines()
    installs = [c for c in calls if c.startswith("apt-get install")]
    assert installs == ["apt-get install -y -qq chromium", "apt-get install -y -qq libatomic1"], calls
    assert calls.count("apt-get update -qq") == 1
    assert calls[-1] == "python -m playwright --version"  # checked again after the install: the driver starts

    second = _browser(bare_browser_machine)  # all there: nothing installed twice
    assert second.returncode == 0, second.stderr
    assert [c for c in Path(bare_browser_machine["CALLS"]).read_text().splitlines() if c.startswith("apt-get")] == \
        [c for c in calls if c.startswith("apt-get")]


@pytest.mark.skipif(os.geteuid() != 0, reason="the install branch runs apt-get as root (sudo otherwise)")
def test_a_driver_that_still_does_not_start_fails_loudly(bare_browser_machine: dict[str, str]) -> None:
    standins = Path(bare_browser_machine["STANDINS"])
    (standins / "apt-get").write_text(BROWSER_APT_GET.replace(': > "$STANDINS/libatomic.so.1"', "true"))
    done = _browser(bare_browser_machine)
    assert done.returncode == 1
    assert "Playwright's driver does not start" in done.stderr and "libatomic.so.1" in done.stderr
