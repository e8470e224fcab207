"""The parsers' only access to files, so that they run without a file system in tests."""

from __future__ import annotations

from typing import Protocol


class Reader(Protocol):
    """File access for the parsers. ``read`` and ``listdir`` raise OSError."""

    def read(self, path: str) -> str: ...

    def glob(self, pattern: str) -> list[str]: ...

    def listdir(self, path: str) -> list[str]: ...


def reason(exc: OSError) -> str:
    """Why a file could not be read, for a finding."""
    return exc.strerror or str(exc)
