"""systemd's readiness protocol (sd_notify), in a few lines of the standard library.

The unit runs with ``Type=notify`` and ``NotifyAccess=all``: the agent core (ExaBGP's child)
says ``READY=1`` once it answers on its control socket, and ``MAINPID=`` names the ExaBGP
of the instance in charge, so that a restart handing over to a new instance moves the
unit's main PID to it before the old one exits. Without ``$NOTIFY_SOCKET`` nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

NOTIFY_ENV = "NOTIFY_SOCKET"


def message(*, main_pid: int | None = None, ready: bool = False, status: str | None = None) -> str:
    """The datagram: newline-separated assignments."""
    lines = []
    if main_pid is not None:
        lines.append(f"MAINPID={main_pid}")
    if ready:
        lines.append("READY=1")
    if status is not None:
        lines.append(f"STATUS={status}")
    return "\n".join(lines) + "\n"


def notify(text: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``text`` to ``$NOTIFY_SOCKET``; False when unset or it fails (logged)."""
    path = (os.environ if environ is None else environ).get(NOTIFY_ENV)
    if not path:
        return False
    # '@' names a socket in the abstract namespace
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(text.encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", path, exc)
        return False
    return True
