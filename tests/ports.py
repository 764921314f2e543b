"""Free localhost TCP ports for tests that start servers or worker processes."""

import socket


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free on 127.0.0.1 a moment ago.

    All sockets stay bound until every port is picked, so the ports are distinct; they are
    closed before returning, so the caller's server can bind them.
    """
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    """One free port on 127.0.0.1 (also a port nothing listens on, for unreachable-server tests)."""
    return free_ports(1)[0]
