"""What the converter did to a file: one :class:`Change` per rewrite or finding, and the converted source.

These records feed the per-call summary that ``asgd-bridge convert`` prints and its ``--report`` JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Change", "ConvertResult"]


@dataclass
class Change:
    """One rewrite or finding, for the per-call summary and ``--report``.

    ``kind`` is what was met (constructor, subclass, super-init, reference, param_groups, report);
    ``arguments`` lists each source argument's fate as ``(source, target, action, reason)``.
    """

    line: int
    column: int
    kind: str
    source: str
    target: str
    reason: str
    arguments: list[tuple[str, str, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "line": self.line,
            "column": self.column,
            "kind": self.kind,
            "source": self.source,
            "target": self.target,
            "reason": self.reason,
            "arguments": [
                {"source": s, "target": t, "action": a, "reason": r} for s, t, a, r in self.arguments
            ],
        }

    def summary(self) -> str:
        """One line (plus one per argument) for humans."""
        head = f"{self.line}:{self.column}: {self.kind}: {self.source} -> {self.target} ({self.reason})"
        lines = [head]
        for s, t, a, r in self.arguments:
            lines.append(f"    {s} -> {t or '-'}: {a}" + (f" ({r})" if r else ""))
        return "\n".join(lines)


@dataclass
class ConvertResult:
    """Converted source and what was done to it."""

    code: str
    changes: list[Change]

    @property
    def reports(self) -> list[Change]:
        """The findings that were not converted and need the user's attention."""
        return [c for c in self.changes if c.kind == "report"]
