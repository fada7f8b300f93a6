"""`make run`'s launcher as a user meets it: killed hard it leaves nothing behind,
and a port held by a leftover is named at start instead of failing later."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from launcher.mesh import CONTEXTS, endpoints, free_offset, mesh_ports
from mesh.local.procs import RedisServer, bindable


def launch(var_dir: Path, offset: int, redis: RedisServer) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "launcher", "--var-dir", str(var_dir), "--port-offset", str(offset)],
        env={**os.environ, "REDIS_URL": redis.url.rsplit("/", 1)[0] + "/5", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def children_of(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(proc.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_launcher_killed_with_sigkill_takes_every_child_with_it(tmp_path: Path, redis_server: RedisServer) -> None:
    offset = free_offset()
    launcher = launch(tmp_path / "var", offset, redis_server)
    try:
        assert launcher.stdout is not None
        for line in launcher.stdout:  # the banner says the mesh is serving
            if "ordermesh is running" in line:
                break
        else:
            raise AssertionError(f"the launcher exited before serving: rc={launcher.wait()}")
        services = children_of(launcher.pid)
        assert len(services) == len(CONTEXTS) + 1, services  # and the gateway
        launcher.send_signal(signal.SIGKILL)  # no handler, no cleanup in the launcher
        launcher.wait(10)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in services) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in services if alive(pid)], "services outlived their launcher"
        assert all(bindable(p) for p in mesh_ports(offset)), "a port is still held"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(10)
        if launcher.stdout is not None:
            launcher.stdout.close()


def test_a_port_held_by_a_leftover_is_named_at_start(tmp_path: Path, redis_server: RedisServer) -> None:
    offset = free_offset()
    held = endpoints(offset)[2].grpc_port  # the order context's
    with socket.socket() as leftover:
        leftover.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        leftover.bind(("0.0.0.0", held))
        leftover.listen()
        launcher = launch(tmp_path / "var", offset, redis_server)
        output, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 1
    assert f"{held} is held by pid {os.getpid()}" in output, output
    others = [p for p in mesh_ports(offset) if p != held]
    assert all(bindable(p) for p in others), "it started nothing before naming the leftover"
