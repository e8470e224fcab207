"""Where a problem is (file, line), the problems of one migration, and the error that
carries them out."""

from __future__ import annotations

from dataclasses import dataclass


class LnvError(Exception):
    """The LNV input is unusable; ``problems`` lists every finding as 'file:line: what'."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Location:
    file: str
    line: int | None = None

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


class Findings:
    """Errors (the input is unusable) and warnings (worth a look) of one migration."""

    def __init__(self) -> None:
        self._errors: list[tuple[Location, str]] = []
        self.warnings: list[str] = []

    @property
    def errors(self) -> list[str]:
        """Files in the order their first problem was found, lines ascending within each."""
        order: dict[str, int] = {}
        for where, _ in self._errors:
            order.setdefault(where.file, len(order))
        ranked = sorted(self._errors, key=lambda e: (order[e[0].file], e[0].line or 0))
        return [f"{where}: {what}" for where, what in ranked]

    def error(self, where: Location, what: str) -> None:
        self._errors.append((where, what))

    def warn(self, where: Location | None, what: str) -> None:
        self.warnings.append(f"{where}: {what}" if where else what)
