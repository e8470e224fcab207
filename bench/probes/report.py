"""What a probe writes: one JSON line per fact on stdout, flushed at once."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)
