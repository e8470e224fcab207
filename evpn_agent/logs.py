"""Logging: one key=value line per event, to stderr, syslog or a file (like LNV's logdest).

Never stdout: in the agent core stdout is ExaBGP's command channel.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time

DESTINATIONS = ("stderr", "syslog", "file:PATH")


class KeyValueFormatter(logging.Formatter):
    """``time=… level=… logger=… pid=… msg="…"``: greppable and parseable."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        msg = record.getMessage().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        line = (
            f"time={stamp}.{int(record.msecs):03d} level={record.levelname.lower()} "
            f'logger={record.name} pid={record.process} msg="{msg}"'
        )
        if record.exc_info:
            line += f' exc="{self.formatException(record.exc_info)}"'.replace("\n", "\\n")
        return line


def handler_for(destination: str) -> logging.Handler:
    if destination == "syslog":
        address = "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        syslog = logging.handlers.SysLogHandler(address=address)
        syslog.ident = "evpn-agent: "
        return syslog
    if destination.startswith("file:"):
        return logging.handlers.WatchedFileHandler(destination[5:])
    return logging.StreamHandler(sys.stderr)


def setup_logging(level: str, destination: str = "stderr") -> None:
    handler = handler_for(destination)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
