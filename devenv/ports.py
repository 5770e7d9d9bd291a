"""Loopback ports for the local servers, chosen below the kernel's ephemeral range.

A port the kernel hands out for bind(0) comes from the ephemeral range, the
range outgoing connections also take their local ports from: between choosing
it and a server binding it, a busy client (a benchmark holding hundreds of
connections) can take it, and a kube-scheduler then fails to start with
"address already in use". A port below the range is never taken that way.
"""

from __future__ import annotations

import random
import socket

LOWEST = 10_000


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            return int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _binds(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port free right now, outside the ephemeral range where possible."""
    high = _ephemeral_start()
    if high - LOWEST >= 1_000:
        for _ in range(200):
            port = random.randrange(LOWEST, high)
            if _binds(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
