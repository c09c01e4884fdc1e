"""libcst argument-list edits for the converter: bind call arguments to rule rows, rename, drop, append.

Both directions' codemods map a call's arguments through :func:`map_arguments`, row by row of
:mod:`.rules`. The call keeps its layout (one line, or one argument per line) and every comment stays
where it was.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import libcst as cst

from .rules import REQUIRED, Action, ArgRule, positional_names, rule_for

__all__ = [
    "Bound",
    "Converted",
    "Fates",
    "ValueConverter",
    "append_args",
    "bind",
    "expr",
    "keyword_arg",
    "literal",
    "map_arguments",
    "remove_args",
    "with_keyword",
]

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


# ---------------------------------------------------------------------------------------------- the rules
#: ``{source name: index in the call's argument list}``.
Bound = dict[str, int]
#: Each source argument's fate: ``(source, target, action, reason)``.
Fates = list[tuple[str, str, str, str]]


@dataclass(frozen=True)
class Converted:
    """What a value converter made of one argument: a new value (None: as written), a note for the
    argument's fate, or the problem that leaves the whole call unchanged and reported."""

    value: cst.BaseExpression | None = None
    note: str = ""
    problem: str | None = None


#: ``convert(rule, arg, original)``: ``arg`` is the argument in the updated tree, ``original`` the same in
#: the source tree (where metadata lives); both None for an omitted argument whose default is written.
ValueConverter = Callable[[ArgRule, "cst.Arg | None", "cst.Arg | None"], Converted]


def bind(args: Sequence[cst.Arg], rules: tuple[ArgRule, ...], owner: str, skip: int = 0) -> Bound | str:
    """Each argument's source name (positional ones in the rules' order), or the problem: ``*args`` /
    ``**kwargs`` (``"dynamic"``), too many positional arguments, an argument ``owner`` does not take, one
    given both by position and by keyword (Python's TypeError when the call runs)."""
    names = positional_names(rules)
    bound: Bound = {}
    for i, arg in enumerate(args[skip:], start=skip):
        if arg.star:
            return "dynamic"
        if arg.keyword is None:
            if i - skip >= len(names):
                return f"too many positional arguments for {owner}"
            bound[names[i - skip]] = i
        else:
            name = arg.keyword.value
            if rule_for(rules, name) is None:
                return f"unknown argument {name!r} ({owner} does not take it)"
            if name in bound:
                return f"TypeError when the call runs: {owner} got multiple values for argument {name!r}"
            bound[name] = i
    return bound


def map_arguments(
    call: cst.Call, original: cst.Call, bound: Bound, rules: tuple[ArgRule, ...], convert: ValueConverter
) -> tuple[list[cst.Arg], Fates] | str:
    """The call's arguments rewritten row by row (renamed, dropped, defaults written, values converted by
    the rows' converters), with each argument's fate; or the first converter's problem."""
    args, originals = list(call.args), list(original.args)
    drop: set[int] = set()
    extra: list[cst.Arg] = []
    fates: Fates = []
    for rule in rules:
        i = bound.get(rule.source)
        if i is None:
            if rule.write_default and rule.target is not None and rule.default is not REQUIRED:
                done = convert(rule, None, None) if rule.value else Converted()
                value = done.value if done.value is not None else cst.Float(repr(float(rule.default)))
                extra.append(keyword_arg(rule.target, value))
                how = rule.action.value if rule.action is Action.FOLD else "default written"
                fates.append((rule.source, rule.target, how, rule.reason))
            continue
        if rule.action is Action.DROP or rule.target is None:
            drop.add(i)
            fates.append((rule.source, "", "dropped", rule.reason))
            continue
        new = with_keyword(args[i], rule.target)
        done = convert(rule, args[i], originals[i]) if rule.value else Converted()
        if done.problem is not None:
            return done.problem
        if done.value is not None:
            new = new.with_changes(value=done.value)
        args[i] = new
        how = f"{rule.action.value}; {done.note}" if done.note else rule.action.value
        fates.append((rule.source, rule.target, how, "" if done.note else rule.reason))
    return append_args(remove_args(args, drop), extra), fates
