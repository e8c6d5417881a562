"""Ports for the local servers and workers: free now, and still free when bound.

A server or worker binds the port it was given only later (a worker after
loading its models, tens of seconds), so the port must stay free meanwhile:
ports are picked below the kernel's ephemeral range, which only programs
binding a port on purpose use, and never handed out twice by this process.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_ports_lock = threading.Lock()
_LOWEST_PORT = 10_000
_ports_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A free port on 127.0.0.1 below the kernel's ephemeral range, never the same twice.

    The port is released before the server binds it. A port from ``bind(0)``
    is an ephemeral one, the kind every outgoing connection on the machine
    takes as its source port meanwhile, so it can be gone by then ("Address
    already in use"); ports below the ephemeral range are only ever taken by
    someone binding them on purpose.
    """
    low, _ = _ephemeral_range()
    with _ports_lock:
        while True:
            port = random.randrange(_LOWEST_PORT, max(low, _LOWEST_PORT + 1000))
            if port in _ports_handed_out:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _ports_handed_out.add(port)
            return port


def tcp_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
