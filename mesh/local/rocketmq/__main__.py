"""python -m mesh.local.rocketmq [--workdir var/rocketmq] [--topic T1 --group G1 ...]

``python -m launcher rocketmq`` runs it with the mesh's own topics and groups."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from mesh.bus.topology import Topology
from mesh.local.rocketmq.config import DEFAULT_RETRY_MAX
from mesh.local.rocketmq.server import RocketMQServer


def _topic_arg(text: str) -> tuple[str, str]:
    name, _, kind = text.partition(":")
    return name, (kind or "NORMAL").upper()


def _group_arg(text: str) -> tuple[str, int]:
    name, _, retry = text.partition(":")
    return name, int(retry) if retry else DEFAULT_RETRY_MAX


def main(argv: list[str] | None = None, *, default_topology: Topology | None = None, prog: str | None = None) -> None:
    """``default_topology``: the topics and groups created when none is given."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m mesh.local.rocketmq",
        description="Run a RocketMQ 5 name server + proxy (broker in-process) on loopback until Ctrl-C.",
    )
    parser.add_argument("--workdir", type=Path, default=Path("var/rocketmq"), help="store, logs and configs")
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        type=_topic_arg,
        metavar="NAME[:TYPE]",
        help="topic to create, TYPE one of NORMAL (default), FIFO, DELAY, TRANSACTION",
    )
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        type=_group_arg,
        metavar="NAME[:RETRY_MAX]",
        help=f"consumer group to create (retry max {DEFAULT_RETRY_MAX} by default)",
    )
    parser.add_argument("--namesrv-port", type=int)
    parser.add_argument("--broker-port", type=int, help="the broker also uses this - 2 and this + 1")
    parser.add_argument("--grpc-port", type=int, help="the proxy's gRPC port, what 5.x clients use")
    parser.add_argument("--remoting-port", type=int, help="the proxy's remoting port")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    topology = default_topology or Topology({}, {})

    try:
        server = RocketMQServer(
            args.workdir,
            dict(args.topic) or topology.topics,
            dict(args.group) or topology.groups,
            namesrv_port=args.namesrv_port,
            broker_port=args.broker_port,
            proxy_grpc_port=args.grpc_port,
            proxy_remoting_port=args.remoting_port,
        )
    except ValueError as error:
        parser.error(str(error))
    # SIGTERM behaves like Ctrl-C, so it also interrupts a start that is still waiting. SIGINT is
    # set explicitly because a shell starts background jobs with it ignored, and Python keeps that.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 0
    try:
        started = time.monotonic()
        server.start(args.timeout)
        print(
            f"RocketMQ ready in {time.monotonic() - started:.1f}s (workdir {server.workdir})\n"
            f"  gRPC endpoint (5.x clients): {server.grpc_endpoint}\n"
            f"  name server:                 {server.namesrv_address}\n"
            f"  proxy remoting:              {server.remoting_endpoint}\n"
            f"  broker:                      {server.broker_address}\n"
            f"  topics: {', '.join(f'{t}:{k}' for t, k in server.topics.items()) or '-'}\n"
            f"  groups: {', '.join(f'{g}:{r}' for g, r in server.groups.items()) or '-'}\n"
            "Ctrl-C to stop.",
            flush=True,
        )
        while not (dead := server.dead()):
            time.sleep(0.5)
        print(f"stopped unexpectedly: {', '.join(dead)}\n{server.log_tails()}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        pass
    except RuntimeError as error:
        print(f"rocketmq: {error}", file=sys.stderr)
        status = 1
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave JVMs behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server.pids:
            print("stopping ...", flush=True)
            server.stop()
            print("stopped.", flush=True)
    raise SystemExit(status)


if __name__ == "__main__":
    main()
