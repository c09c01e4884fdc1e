"""End to end: the torch programs in tests/programs, converted (ASGD Bridge + PaConvert), run in both
frameworks; per-step losses must agree within 1e-4 relative."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "programs"))
import harness  # noqa: E402


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    src = harness.stage(harness.PROGRAMS, root / "torch")
    harness.convert_bridge(src, root / "paddle")
    return root


@pytest.mark.parametrize("name", harness.PROGRAMS)
def test_converted_program_matches_torch(converted: Path, name: str) -> None:
    ref = harness.run_program(converted / "torch" / f"{name}.py")
    got = harness.run_program(converted / "paddle" / f"{name}.py")
    assert len(ref) >= 40
    assert set(got) == set(ref)
    assert harness.max_rel_diff(ref, got) < 1e-4


def test_converted_programs_import_no_torch(converted: Path) -> None:
    for name in harness.PROGRAMS:
        text = (converted / "paddle" / f"{name}.py").read_text()
        assert "import torch" not in text, name
        assert "optim.ASGD(" not in text and "paddle.optimizer.ASGD(" not in text, name


def test_awd_lstm_switches_to_averaged_sgd(converted: Path) -> None:
    text = (converted / "paddle" / "awd_lstm.py").read_text()
    assert "asgd_bridge.paddle.ASGD(" in text
    assert "asgd_bridge.convert.runtime.param_groups(optimizer)" in text


def test_sgd_exact_program_uses_plain_paddle_sgd(converted: Path) -> None:
    text = (converted / "paddle" / "sgd_exact.py").read_text()
    assert "paddle.optimizer.SGD(" in text and "asgd_bridge" not in text


def test_groups_held_in_names_keep_averaged_sgd(converted: Path) -> None:
    """``[body, head]`` may be group dicts with their own lr: plain SGD is not provably exact there."""
    text = (converted / "paddle" / "groups_by_name.py").read_text()
    assert "asgd_bridge.paddle.ASGD(" in text and "paddle.optimizer.SGD(" not in text


def test_docs_table_lists_every_program_within_tolerance() -> None:
    """docs/migration.md's table (from ``benchmarks/migration_table.py --write-docs``) claims < 1e-4 for
    every program that the e2e test runs, and lists no other."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import migration_table

    rows = migration_table.parse(migration_table.DOC.read_text())
    assert set(rows) == set(harness.PROGRAMS)
    for name, (ours, _) in rows.items():
        assert float(ours) < 1e-4, name


def _hand_migrate(text: str) -> str:
    """Swap each model line tagged ``# torch: <line>`` for its torch twin (what a user does by hand)."""
    lines = []
    for line in text.splitlines():
        code, sep, twin = line.partition("  # torch: ")
        lines.append(code[: len(code) - len(code.lstrip())] + twin if sep else line)
    return "\n".join(lines) + "\n"


def test_to_torch_program_matches_paddle_sag(tmp_path: Path) -> None:
    """``--to torch``: paddle.optimizer.ASGD (every argument; L2Decay, L1Decay, float; clear_grad, get_lr,
    set_lr, state dicts) becomes asgd_bridge.torch.SAG; with the model lines migrated by hand the torch
    program's per-step losses are Paddle's within 1e-4."""
    from asgd_bridge.convert import cli

    src = Path(harness.HERE) / "paddle_sag.py"
    out = tmp_path / "torch_sag.py"
    assert cli.main([str(src), "--to", "torch", "-o", str(out), "-q"]) == 0
    out.write_text(_hand_migrate(out.read_text()))
    code = out.read_text().split("\"\"\"", 2)[2]  # after the docstring
    assert "paddle." not in code and "import paddle" not in code
    ref, got = harness.run_program(src), harness.run_program(out)
    assert len(ref) == 60 and set(got) == set(ref)
    assert harness.max_rel_diff(ref, got) < 1e-4
