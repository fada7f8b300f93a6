"""Start and stop real server processes on loopback (redis-server, mariadbd)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

# Ports below the kernel's ephemeral range: a port the kernel may hand to any outgoing
# connection (the broker's, MariaDB's, a client's) can be taken between choosing it here and
# a child process binding it, and a CI run once lost a mesh that way.
_PRIVATE_PORTS = (20000, 32768)


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (inclusive)."""
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


def bindable(port: int) -> bool:
    """Nobody listens on ``port`` on any interface. The wildcard addresses, because the JVMs
    and gRPC servers bind all interfaces (IPv6 sockets too); SO_REUSEADDR as servers set it,
    so a port left in TIME_WAIT by a killed server counts as free while a listened one does not."""
    families = [(socket.AF_INET, "0.0.0.0")] + ([(socket.AF_INET6, "::")] if socket.has_ipv6 else [])
    for family, address in families:
        try:
            sock = socket.socket(family)
        except OSError:  # no IPv6 on this host
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def port_owner(port: int) -> str | None:
    """Who listens on ``port`` here, as "pid N (command line)", or None. Read from
    /proc (the listening socket's inode, then the process holding it), so a start
    can name a leftover of an earlier run instead of failing on "address in use"."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # local address "IP:PORT" in hex, state 0A = LISTEN, inode in column 10
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes:
                    command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {proc.name} ({command[:120]})"
    return "a process this user cannot see"


def free_port() -> int:
    """A port nobody listens on, outside the ephemeral range (see ``_PRIVATE_PORTS``)."""
    low = _PRIVATE_PORTS[0]
    high = min(_PRIVATE_PORTS[1], ephemeral_ports()[0]) - 8  # room for a group of ports (RocketMQ)
    for _ in range(500):
        port = random.randrange(low, high)
        if bindable(port):
            return port
    raise RuntimeError(f"no free port between {low} and {high}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def require_binary(name: str, hint: str = "run 'make setup'") -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        raise RuntimeError(f"{name} not found: {hint}")
    return path


# With ``die_with_parent`` a child gets SIGTERM when the process that started
# it dies, however it dies (even SIGKILL): nothing is left holding ports for the
# next start. setpriv sets the parent-death signal and execs the command (no
# preexec_fn, which is unsafe in a process with threads, as gRPC's are). The
# signal follows the *thread* that started the child, so only a process that
# starts its children from its main thread (the launcher) asks for it: a child
# started from a worker thread would die when that thread ends.
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


class ManagedProcess:
    """A child process with its output in a log file; stopped with SIGTERM then SIGKILL."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        *,
        die_with_parent: bool = False,
    ) -> None:
        self.name = name
        self.die_with_parent = die_with_parent
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*(_DIE_WITH_PARENT if self.die_with_parent else []), *self.argv],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,  # Ctrl-C in the terminal reaches only the launcher
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive and self.proc is not None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class RedisServer:
    """A throwaway redis-server: no persistence unless asked, loopback only."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        appendonly: bool = False,
        extra_args: Sequence[str] = (),
        die_with_parent: bool = False,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.die_with_parent = die_with_parent
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            require_binary("redis-server"),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip
        self.process = ManagedProcess("redis", argv, self.workdir / "redis.log", die_with_parent=self.die_with_parent)
        self.process.start()
        wait_until(lambda: port_open(self.port) or not self._alive(), timeout, f"redis on {self.port}")
        if not self._alive():
            raise RuntimeError(f"redis-server failed to start:\n{self.process.tail()}")
        return self

    def _alive(self) -> bool:
        return self.process is not None and self.process.alive

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        """SIGKILL: no shutdown save; only what reached the append-only file survives."""
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            self.process.wait(10)
            self.process.stop()  # reaps it and closes its log


class MariaDBServer:
    """A private mariadbd with its own data directory; root without password on loopback."""

    def __init__(self, workdir: Path, port: int | None = None, *, die_with_parent: bool = False) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.die_with_parent = die_with_parent
        self.process: ManagedProcess | None = None

    def url(self, database: str) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> MariaDBServer:
        data = self.workdir / "data"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (data / "mysql").exists():
            subprocess.run(
                [
                    require_binary("mariadb-install-db"),
                    "--no-defaults",
                    f"--datadir={data}",
                    "--auth-root-authentication-method=normal",
                    f"--user={os.environ.get('USER', 'root')}",
                    "--skip-test-db",
                ],
                check=True,
                capture_output=True,
            )
        argv = [
            require_binary("mariadbd"),
            "--no-defaults",
            f"--datadir={data}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.workdir / 'mariadb.sock'}",
            f"--pid-file={self.workdir / 'mariadb.pid'}",
            "--user=root",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=128M",
            "--max-connections=500",
        ]
        self.process = ManagedProcess(
            "mariadb", argv, self.workdir / "mariadb.log", die_with_parent=self.die_with_parent
        )
        self.process.start()
        wait_until(
            lambda: port_open(self.port) or not (self.process and self.process.alive),
            timeout,
            f"mariadb on {self.port}",
        )
        if not (self.process and self.process.alive):
            raise RuntimeError(f"mariadbd failed to start:\n{self.process.tail() if self.process else ''}")
        return self

    def create_database(self, name: str) -> None:
        subprocess.run(
            [require_binary("mariadb"), "-h127.0.0.1", f"-P{self.port}", "-uroot",
             "-e", f"CREATE DATABASE IF NOT EXISTS `{name}`"],
            check=True,
            capture_output=True,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(30)
