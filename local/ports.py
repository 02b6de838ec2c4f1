"""The local stack's listening sockets: bound before anything starts, held until served.

Choosing a free port by binding port 0, closing the socket and passing the number on lets
another process (or a second call) take the same port before the server binds it. Here a
port is claimed once, by binding and listening, and the socket itself is handed to the
server (or, for the emulator, to its process): the port reported is the port served, and a
port already in use is found before anything has been started.
"""
from __future__ import annotations

import errno
import socket


class PortInUse(Exception):
    def __init__(self, host: str, port: int, purpose: str):
        super().__init__(f"port {port} on {host} is already in use, so {purpose} cannot listen there")
        self.host, self.port, self.purpose = host, port, purpose


def claim_port(host: str, port: int, purpose: str) -> socket.socket:
    """A listening TCP socket on host:port (port 0: one the system picks), or PortInUse."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As http.server does: a port left in TIME_WAIT by a previous run is reusable, one
        # with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise PortInUse(host, port, purpose) from None
        raise
    return sock


def serving_on(server_cls, sock: socket.socket):
    """`server_cls` (a socketserver.TCPServer) that serves on an already listening socket."""

    class OnClaimedSocket(server_cls):
        def __init__(self, server_address, handler, *args, **kwargs):
            super().__init__(server_address, handler, *args, bind_and_activate=False, **kwargs)
            self.socket.close()  # the one TCPServer opened; the claimed one replaces it
            self.socket = sock
            self.server_address = sock.getsockname()
            # What HTTPServer.server_bind would have recorded.
            self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    OnClaimedSocket.__name__ = server_cls.__name__
    return OnClaimedSocket
