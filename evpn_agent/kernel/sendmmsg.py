"""sendmmsg(2) through ctypes, because Python's socket module has no sendmmsg.

The writer runs in a thread of its own while another thread runs Python. Every syscall made
from Python releases the GIL and takes it back, and taking it back may wait a whole switch
interval (5 ms): reading one ack per request made 100k FDB adds take 32 s under contention.
ctypes releases the GIL once around the foreign call, so one sendmmsg() hands the kernel every
datagram of a batch for the price of one switch.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


def _load() -> Callable[..., Any] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter runs on
        function: Callable[..., Any] = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]  # type: ignore[attr-defined]
    function.restype = ctypes.c_int  # type: ignore[attr-defined]
    return function


_SENDMMSG = _load()
AVAILABLE = _SENDMMSG is not None


def send_datagrams(
    sock: socket.socket, data: bytearray, ends: Sequence[int], *, batched: bool = True
) -> tuple[int, OSError | None]:
    """Send ``data[ends[j-1]:ends[j]]`` as datagram j, in order (ends ascending, the last
    one ``len(data)``). Returns how many datagrams went out and the error that stopped the
    rest (None when all went out).

    One sendmmsg() call when ``batched`` and the C library has it, one send() per datagram
    otherwise.
    """
    if not ends:
        return 0, None
    if not batched or _SENDMMSG is None:
        return _send_each(sock, data, ends)
    count = len(ends)
    buffer = (ctypes.c_char * len(data)).from_buffer(data)  # no copy; pins data meanwhile
    try:
        address = ctypes.addressof(buffer)
        iovecs = (_Iovec * count)()
        headers = (_Mmsghdr * count)()
        iovec_size = ctypes.sizeof(_Iovec)
        iovec_base = ctypes.addressof(iovecs)
        start = 0
        for j, end in enumerate(ends):
            iovec = iovecs[j]
            iovec.base = address + start
            iovec.len = end - start
            header = headers[j].hdr
            header.iov = iovec_base + j * iovec_size
            header.iovlen = 1
            start = end
        header_size = ctypes.sizeof(_Mmsghdr)
        header_base = ctypes.addressof(headers)
        fd = sock.fileno()  # -1 once closed: the kernel answers EBADF
        done = 0
        while done < count:  # the kernel takes at most UIO_MAXIOV (1024) datagrams per call
            sent = _SENDMMSG(fd, header_base + done * header_size, count - done, 0)
            if sent < 0:
                code = ctypes.get_errno()
                if code == errno.EINTR:
                    continue
                return done, OSError(code, f"sendmmsg: {os.strerror(code)}")
            done += sent
        return done, None
    finally:
        del buffer  # release the export so that data may be resized again


def _send_each(
    sock: socket.socket, data: bytearray, ends: Sequence[int]
) -> tuple[int, OSError | None]:
    with memoryview(data) as view:
        start = 0
        for j, end in enumerate(ends):
            try:
                sock.send(view[start:end])
            except OSError as exc:
                return j, exc
            start = end
        return len(ends), None
