"""A minimal ExaBGP API process for tests and fixture capture (stdlib only).

- appends every line ExaBGP writes to us (JSON messages, ``done``/``error`` acks) to
  ``--record`` as received;
- at start, writes the command lines of ``--on-start`` to ExaBGP (no session needed: a
  route injected while the session is down waits in ExaBGP's adj-rib-out);
- on every BGP session up, writes the command lines of ``--on-up`` to ExaBGP;
- forwards each line written to the ``--commands`` FIFO to ExaBGP, so a test can drive
  announces and withdraws while the session runs.

stdout is ExaBGP's command channel: only commands go there; diagnostics go to stderr.
stdin is drained on the main thread without ever waiting on anything else, because
ExaBGP blocks when its API process stops reading.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("speaker_peer")
_stdout_lock = threading.Lock()


def send(lines: Sequence[str]) -> None:
    with _stdout_lock:
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()


def forward_fifo(fifo: Path) -> None:
    while True:
        # open() blocks until a writer opens the FIFO; EOF when it closes: reopen
        with fifo.open() as commands:
            for line in commands:
                if line.strip():
                    send([line.rstrip("\n")])


def is_session_up(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        message = json.loads(line)
    except ValueError:
        return False
    return bool(message.get("type") == "state" and message.get("neighbor", {}).get("state") == "up")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--commands", type=Path)
    parser.add_argument("--on-start", type=Path)
    parser.add_argument("--on-up", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)

    on_up = args.on_up.read_text().splitlines() if args.on_up else []
    if args.on_start:
        send(args.on_start.read_text().splitlines())
    if args.commands:
        threading.Thread(target=forward_fifo, args=(args.commands,), daemon=True).start()

    with args.record.open("a", encoding="utf-8") as record:
        for raw in sys.stdin.buffer:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            record.write(line + "\n")
            record.flush()
            if on_up and is_session_up(line):
                log.info("session up: sending %d command(s)", len(on_up))
                send(on_up)
    return 0


if __name__ == "__main__":
    sys.exit(main())
