"""libcst argument-list edits for the converter: rename, drop and append call arguments.

The call keeps its layout (one line, or one argument per line) and every comment stays where it was.
"""

from __future__ import annotations

import ast
from typing import Any

import libcst as cst

__all__ = ["append_args", "expr", "float_arg", "keyword_arg", "literal", "remove_args", "with_keyword"]

_EQ = cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))


def expr(dotted: str) -> cst.BaseExpression:
    """The expression spelled ``dotted`` (a qualified name such as ``asgd_bridge.paddle.ASGD``)."""
    return cst.parse_expression(dotted)


def literal(code: str) -> Any:
    """The value of a literal expression's source, or raise ValueError."""
    return ast.literal_eval(code)


def keyword_arg(name: str, value: cst.BaseExpression) -> cst.Arg:
    """``name=value``, spelled without spaces."""
    return cst.Arg(keyword=cst.Name(name), equal=_EQ, value=value)


def float_arg(name: str, value: Any) -> cst.Arg:
    """``name=<value as a float literal>``, for a default the converter writes out."""
    return keyword_arg(name, cst.Float(repr(float(value))))


def with_keyword(arg: cst.Arg, name: str) -> cst.Arg:
    """``arg`` passed by keyword ``name`` (its value, comma and comment unchanged)."""
    if arg.keyword is not None and arg.keyword.value == name:
        return arg
    equal = arg.equal if isinstance(arg.equal, cst.AssignEqual) else _EQ
    return arg.with_changes(keyword=cst.Name(name), equal=equal)


def _layout(layout: cst.Comma, comment: cst.Comma | None) -> cst.Comma:
    """``layout``'s line break and indentation, with the trailing comment of ``comment`` (or none)."""
    ws = layout.whitespace_after
    if not isinstance(ws, cst.ParenthesizedWhitespace):
        return layout
    first, empty = cst.TrailingWhitespace(), ()
    if comment is not None and isinstance(comment.whitespace_after, cst.ParenthesizedWhitespace):
        first, empty = comment.whitespace_after.first_line, comment.whitespace_after.empty_lines
    return layout.with_changes(whitespace_after=ws.with_changes(first_line=first, empty_lines=empty))


def _comma(arg: cst.Arg) -> cst.Comma | None:
    return arg.comma if isinstance(arg.comma, cst.Comma) else None


def append_args(args: list[cst.Arg], extra: list[cst.Arg]) -> list[cst.Arg]:
    """Append ``extra`` in the layout of the existing call (one line, or one argument per line).

    Comments stay on the argument they follow; the new arguments get none.
    """
    if not extra:
        return args
    space = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    if not args:
        return [e.with_changes(comma=space) for e in extra[:-1]] + [extra[-1]]
    last, last_comma = args[-1], _comma(args[-1])
    if last_comma is None:
        inner = _comma(args[-2]) if len(args) > 1 else None
        sep = inner if inner is not None else space
        return [
            *args[:-1],
            last.with_changes(comma=sep),
            *(e.with_changes(comma=sep) for e in extra[:-1]),
            extra[-1],
        ]
    # trailing comma: keep its style; on multi-line calls each new argument gets its own line
    inner_src = _comma(args[-2]) if len(args) > 1 else None
    inner_src = inner_src if inner_src is not None else last_comma
    inner = _layout(inner_src, None)
    body = [*args[:-1], last.with_changes(comma=_layout(inner_src, last_comma))]
    body += [e.with_changes(comma=inner) for e in extra[:-1]]
    return [*body, extra[-1].with_changes(comma=_layout(last_comma, None))]


def remove_args(args: list[cst.Arg], drop: set[int]) -> list[cst.Arg]:
    """Remove the args at indices ``drop``; the new last argument takes over the old last one's layout
    (trailing comma or not) and keeps its own comment."""
    if not drop:
        return args
    kept = [a for i, a in enumerate(args) if i not in drop]
    if kept and len(args) - 1 in drop:
        old_last = _comma(args[-1])
        new_comma = _layout(old_last, _comma(kept[-1])) if old_last is not None else cst.MaybeSentinel.DEFAULT
        kept[-1] = kept[-1].with_changes(comma=new_comma)
    return kept
