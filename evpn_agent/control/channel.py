"""The root-only unix control socket: one JSON request line in, one JSON answer out."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any]
MAX_REQUEST = 64 * 1024


class ControlError(Exception):
    """The agent could not be asked, or answered with an error."""


async def serve(path: str, handler: Handler) -> asyncio.AbstractServer:
    sock_path = Path(path)
    sock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileNotFoundError):
        sock_path.unlink()  # a previous core's socket: we are its successor

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line[:MAX_REQUEST])
                if not isinstance(request, dict):
                    raise ValueError("request is not an object")
                result = handler(request)
                if inspect.isawaitable(result):
                    result = await result
                answer = {"ok": True, "data": result}
            except (ValueError, KeyError, TypeError) as exc:
                answer = {"ok": False, "error": str(exc)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    old_umask = os.umask(0o177)  # the socket file is created 0600: root only
    try:
        server = await asyncio.start_unix_server(on_client, path=path, limit=MAX_REQUEST)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return server


def request(path: str, command: str, timeout: float = 30.0, **args: Any) -> Any:
    """Ask the running agent; raises ControlError with a one-line reason."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except FileNotFoundError:
        raise ControlError(f"evpn-agent is not running (no control socket at {path})") from None
    except ConnectionRefusedError:
        raise ControlError(f"evpn-agent is not running (nobody listens on {path})") from None
    except PermissionError:
        raise ControlError(
            f"permission denied on {path}: the control socket is root-only"
        ) from None
    except (TimeoutError, OSError) as exc:
        raise ControlError(f"cannot talk to evpn-agent at {path}: {exc}") from None
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"evpn-agent at {path} sent an unreadable answer") from None
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error") if isinstance(answer, dict) else None
        raise ControlError(f"evpn-agent: {error or 'request failed'}")
    return answer.get("data")
