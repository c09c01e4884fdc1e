"""YAML and JSON configs that name the optimizer class (Hydra's ``_target_: torch.optim.ASGD``).

``--to paddle``: a ``_target_`` naming torch's class becomes :data:`PADDLE_TARGET`, the Paddle averaged SGD
with torch's signature (the config's keys are torch's argument names, and Hydra's ``instantiate`` passes
them, and ``params=...``, as keywords): exact, so it is converted. Any other mention of the class by its
qualified name, or a value that is just ``ASGD`` (``optimizer: ASGD``), is reported with its line: the
program that reads it must be checked by hand. ``--to torch``: Paddle's ``_target_`` is reported (its
keys would need renaming). The file is edited line by line, so the rest of it stays byte for byte.
"""

from __future__ import annotations

import re

from .changes import Change

__all__ = ["CONFIG_SUFFIXES", "PADDLE_TARGET", "convert_config"]

CONFIG_SUFFIXES = frozenset({".yaml", ".yml", ".json"})

#: What a ``_target_: torch.optim.ASGD`` becomes: the class that takes torch.optim.ASGD's arguments.
PADDLE_TARGET = "asgd_bridge.convert.runtime.ASGD"

_SOURCES = {"paddle": r"torch\.optim(?:\.asgd)?\.ASGD", "torch": r"paddle\.optimizer(?:\.asgd)?\.ASGD"}


def _target_pattern(source: str) -> re.Pattern[str]:
    # YAML `_target_: X`, `- _target_: 'X'`, JSON `"_target_": "X"`; X alone in its quotes.
    head = r"""(?P<head>["']?_target_["']?\s*:\s*)(?P<q>["']?)"""
    return re.compile(head + "(?P<name>" + source + r")(?P=q)(?![\w.])")


def _mention_pattern(source: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w.])" + source + r"(?![\w.])" + r"""|:\s*(["']?)ASGD\1\s*(?:[,}#]|$)""")


def convert_config(text: str, to: str = "paddle") -> tuple[str, list[Change]]:
    """The config with exact ``_target_`` lines converted, and one :class:`Change` per line met."""
    source = _SOURCES[to]
    target_re, mention_re = _target_pattern(source), _mention_pattern(source)
    out: list[str] = []
    changes: list[Change] = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        body = line.rstrip("\r\n")
        code = body.split("#", 1)[0] if not body.lstrip().startswith(("{", "[", '"')) else body
        match = target_re.search(code)
        if match and to == "paddle":
            new = body[: match.start("name")] + PADDLE_TARGET + body[match.end("name") :]
            out.append(new + line[len(body) :])
            changes.append(
                Change(
                    number,
                    match.start("name") + 1,
                    "config",
                    match.group("name"),
                    PADDLE_TARGET,
                    "Hydra target: Paddle averaged SGD taking torch.optim.ASGD's arguments (exact)",
                )
            )
            continue
        out.append(line)
        found = match or mention_re.search(code)
        if found:
            why = (
                "Paddle's class in a config: its keys are Paddle's argument names; write "
                "asgd_bridge.torch.SAG with torch's names by hand"
                if to == "torch"
                else "the optimizer named in a config: check the code that reads it by hand"
            )
            changes.append(Change(number, found.start() + 1, "report", body.strip()[:80], "(unchanged)", why))
    return "".join(out), changes
