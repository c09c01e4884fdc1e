# ruff: noqa: E501  (the layout table holds each file on one line)
"""The converter's own import handling (:mod:`asgd_bridge.convert.imports`, one metadata pass) against
libcst's ``AddImportsVisitor`` / ``RemoveImportsVisitor`` (each resolving scopes again) on a table of
import layouts: the converted file must be the same text."""

from __future__ import annotations

import textwrap
from dataclasses import replace

import libcst as cst
import pytest
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor, ImportItem, RemoveImportsVisitor
from libcst.metadata import MetadataWrapper

from asgd_bridge.convert.imports import add_imports
from asgd_bridge.convert.transform import DIRECTIONS, convert_source

_CALL = "opt = ASGD(model.parameters(), lr=0.1)\n"
LAYOUTS = {
    "docstring_first": '"""A module."""\nfrom torch.optim import ASGD\n\n' + _CALL,
    "docstring_then_code": '"""A module."""\nx = 1\nimport torch\nopt = torch.optim.ASGD(ps)\n',
    "strict_flag": "__strict__ = True\nimport torch\nopt = torch.optim.ASGD(ps)\n",
    "future_imports": '"""Doc."""\nfrom __future__ import annotations\n\nimport torch\nfrom torch.optim import ASGD\n' + _CALL,
    "comment_first": "# header\nimport torch\n# about the optimizer\nopt = torch.optim.ASGD(ps)\n",
    "no_imports_at_top": "def f(ps):\n    import torch\n    return torch.optim.ASGD(ps)\n",
    "existing_bridge_import": "import asgd_bridge.paddle\nimport torch\nopt = torch.optim.ASGD(ps)\n",
    "existing_bridge_import_aliased": "import asgd_bridge.paddle as ab\nimport torch\nopt = torch.optim.ASGD(ps)\n",
    "existing_bridge_import_late": "import torch\nx = 1\nimport asgd_bridge.paddle\nopt = torch.optim.ASGD(ps)\n",
    "alias_still_used": "from torch.optim import ASGD\n" + _CALL + "opt2 = ASGD(ps, momentum=0.9)\n",
    "alias_unused": "from torch.optim import ASGD as Averaged, SGD\nopt = Averaged(ps)\nsgd = SGD(ps)\n",
    "alias_unused_parenthesised": "from torch.optim import (\n    SGD,  # plain\n    ASGD,\n)\n" + _CALL,
    "alias_first_of_two": "from torch.optim import ASGD, Adam\n" + _CALL + "a = Adam(ps)\n",
    "alias_in_all": "from torch.optim import ASGD\n__all__ = ['ASGD']\n" + _CALL,
    "alias_in_string_annotation": "from torch.optim import ASGD\n" + _CALL + "def f(o: 'ASGD') -> None: ...\n",
    "alias_shadowed_in_function": "from torch.optim import ASGD\n" + _CALL + "def f():\n    ASGD = 3\n    return ASGD\n",
    "alias_mixed": "from torch.optim import ASGD\n" + _CALL + "if cond:\n    ASGD = other\nopt = ASGD(ps)\n",
    "two_imports_of_alias": "from torch.optim import ASGD\nfrom torch.optim import ASGD\n" + _CALL,
    "star_import": "from torch.optim import *\n" + _CALL,
    "star_and_named": "from torch.optim import *\nfrom torch.optim import ASGD\n" + _CALL,
    "conditional_import": "try:\n    from torch.optim import ASGD\nexcept ImportError:\n    ASGD = None\n" + _CALL,
    "if_import": "import torch\nif torch.cuda.is_available():\n    from torch.optim import ASGD\n    " + _CALL,
    "function_import": "def make(ps):\n    from torch.optim import ASGD\n    return ASGD(ps, lr=0.1)\n",
    "function_import_kept": "def make(ps):\n    from torch.optim import ASGD\n    print(ASGD)\n    return ASGD(ps, momentum=1)\n",
    "semicolon_imports": "import torch; from torch.optim import ASGD\n" + _CALL,
    "module_alias": "import torch.optim as optim\nopt = optim.ASGD(ps, lr=0.2)\n",
    "crlf": "import torch\r\nfrom torch.optim import ASGD\r\n\r\nopt = ASGD(ps)\r\n",
    "subclass_and_reference": "from torch.optim import ASGD\nclass A(ASGD):\n    pass\nk = ASGD\n",
    "paddle_reported_call": "from paddle.optimizer import ASGD\nfrom paddle.optimizer.lr import StepDecay\nopt = ASGD(StepDecay(0.1, 2), 2, ps)\n",
    "paddle_to_torch": "import paddle\nfrom paddle.optimizer import ASGD\nopt = ASGD(parameters=ps, learning_rate=0.1)\n",
}


def _with_libcst_visitors(code: str, to: str) -> str:
    """The same codemod, its imports added and removed by libcst's own visitors (a copy of the module,
    scopes resolved again for each), as the converter did before it handled imports itself."""
    command = DIRECTIONS[to](CodemodContext())
    wrapper = MetadataWrapper(cst.parse_module(code))
    with command.resolve(wrapper):
        command.context = replace(command.context, wrapper=wrapper)
        out = command.transform_module_impl(wrapper.module)
    if command._needed:
        out = AddImportsVisitor(command.context, [ImportItem(m) for m in command._needed]).transform_module(out)
    if command.changes:
        out = RemoveImportsVisitor(command.context, command._removal_requests()).transform_module(out)
    return out.code


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_imports_as_libcst_writes_them(name: str) -> None:
    code = LAYOUTS[name]
    to = "torch" if name.startswith("paddle") else "paddle"
    expected = _with_libcst_visitors(code, to)
    assert convert_source(code, to=to).code == expected


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("needed", [["asgd_bridge.paddle"], ["paddle.optimizer", "asgd_bridge.convert.runtime"]])
def test_add_imports_matches_add_imports_visitor(name: str, needed: list[str]) -> None:
    module = cst.parse_module(LAYOUTS[name])
    ours = add_imports(module, needed).code
    theirs = AddImportsVisitor(CodemodContext(), [ImportItem(m) for m in needed]).transform_module(module).code
    assert ours == theirs


def test_table_covers_rewrites_that_drop_and_keep_imports() -> None:
    dropped = [n for n in LAYOUTS if "from torch.optim import ASGD" in LAYOUTS[n]
               and "from torch.optim import ASGD" not in convert_source(LAYOUTS[n]).code]
    kept = [n for n in LAYOUTS if "from torch.optim import ASGD" in convert_source(LAYOUTS[n]).code]
    assert len(dropped) >= 3 and len(kept) >= 3, (dropped, kept)


def test_layout_sources_are_python() -> None:
    for code in LAYOUTS.values():
        compile(textwrap.dedent(code), "<layout>", "exec")
