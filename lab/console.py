"""What the demo's commands print, and the two ways they fail."""

from __future__ import annotations


class LabFailed(Exception):
    """A check failed; the lab stays up for inspection."""


class Usage(Exception):
    """The command cannot run as asked (exit status 2)."""


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text} ==")


def fmt_seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:5.1f} s"
