"""Network helpers shared by every command that listens or sends report text: is a host this
machine, and a listening socket bound before any slow start-up."""

from __future__ import annotations

import ipaddress
import socket

from radllama.errors import RadLlamaError


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a public interface


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before loading the model, so a taken port fails in a second with a clear line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RadLlamaError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock
