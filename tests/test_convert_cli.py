"""The ``convert`` command: files and trees, --diff/--check/--in-place/--report, bad input, atomic writes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from asgd_bridge.convert import cli
from asgd_bridge.convert.files import atomic_write, convert_paths

SRC = "import torch\n\n# the optimizer\nopt = torch.optim.ASGD(model.parameters(), lr=0.1)\nuse(opt)\n"
PLAIN = "import torch\n\nx = torch.zeros(3)  # no optimizer here\n"


def _tree(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "train.py").write_text(SRC)
    (root / "pkg" / "sub" / "model.py").write_text(PLAIN)
    (root / "pkg" / "sub" / "broken.py").write_text("import torch\nopt = torch.optim.ASGD(\n")
    (root / "pkg" / "notes.txt").write_text("ASGD")
    return root / "pkg"


def run(*argv: str) -> int:
    return cli.main(list(argv))


def test_register_adds_convert_with_func() -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert", "x.py", "--check"])
    assert args.func is cli.run and args.check


def test_file_to_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "train.py"
    src.write_text(SRC)
    assert run(str(src), "-o", str(tmp_path / "out.py")) == 0
    out = (tmp_path / "out.py").read_text()
    assert "asgd_bridge.paddle.ASGD(parameters=model.parameters(), learning_rate=0.1" in out
    assert "# the optimizer\n" in out
    assert src.read_text() == SRC
    err = capsys.readouterr().err
    assert "torch.optim.ASGD" in err and "lr -> learning_rate" in err


def test_tree_errors_do_not_stop_other_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg = _tree(tmp_path)
    out = tmp_path / "out"
    assert run(str(pkg), "-o", str(out), "--report", str(tmp_path / "r.json")) == 2
    err = capsys.readouterr().err
    assert "broken.py:2:" in err and "invalid Python" in err
    assert "asgd_bridge.paddle.ASGD" in (out / "train.py").read_text()
    assert (out / "sub" / "model.py").read_bytes() == (pkg / "sub" / "model.py").read_bytes()
    assert not (out / "sub" / "broken.py").exists()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["totals"] == {**report["totals"], "files": 3, "changed": 1, "errors": 1}
    changed = [f for f in report["files"] if f["changed"]]
    assert changed[0]["changes"][0]["target"] == "asgd_bridge.paddle.ASGD"


def test_check_and_diff_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "train.py"
    src.write_text(SRC)
    assert run(str(src), "--check") == 1
    assert run(str(src), "--diff") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"--- a/{str(src).lstrip('/')}") and "+opt = asgd_bridge.paddle.ASGD(" in out
    assert src.read_text() == SRC
    plain = tmp_path / "plain.py"
    plain.write_text(PLAIN)
    assert run(str(plain), "--check") == 0


def test_in_place_then_idempotent(tmp_path: Path) -> None:
    pkg = _tree(tmp_path)
    (pkg / "sub" / "broken.py").unlink()
    before = (pkg / "sub" / "model.py").stat().st_mtime_ns
    assert run(str(pkg), "--in-place", "-q") == 0
    first = (pkg / "train.py").read_text()
    assert "asgd_bridge.paddle.ASGD" in first
    assert (pkg / "sub" / "model.py").stat().st_mtime_ns == before  # unchanged files are not rewritten
    assert run(str(pkg), "--check", "-q") == 0
    assert run(str(pkg), "--in-place", "-q") == 0
    assert (pkg / "train.py").read_text() == first


def test_bad_file_left_untouched(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    text = "import torch\nopt = torch.optim.ASGD(\n"
    bad.write_text(text)
    assert run(str(bad), "--in-place") == 2
    assert bad.read_text() == text


def test_usage_errors(tmp_path: Path) -> None:
    src = tmp_path / "t.py"
    src.write_text(SRC)
    assert run(str(src)) == 2  # nowhere to write
    assert run(str(tmp_path / "missing.py"), "--check") == 2
    assert run(str(src), "--with-paconvert", "--check") == 2
    assert run(str(src), "--to", "torch", "--with-paconvert", "-o", str(tmp_path / "o.py")) == 2


def test_to_torch(tmp_path: Path) -> None:
    src = tmp_path / "p.py"
    src.write_text("import paddle\n\nopt = paddle.optimizer.ASGD(parameters=ps, batch_num=4)\n")
    assert run(str(src), "--to", "torch", "-o", str(tmp_path / "t.py"), "-q") == 0
    assert "asgd_bridge.torch.SAG(params=ps, batch_num=4, lr=0.001)" in (tmp_path / "t.py").read_text()


def test_to_torch_reports_a_paddle_lr_scheduler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "p.py"
    src.write_text(
        "import paddle\n\nsched = paddle.optimizer.lr.StepDecay(0.1, step_size=10)\n"
        "opt = paddle.optimizer.ASGD(learning_rate=sched, parameters=ps)\n"
    )
    out, report = tmp_path / "t.py", tmp_path / "r.json"
    assert run(str(src), "--to", "torch", "-o", str(out), "--report", str(report)) == 1  # left to do
    assert "asgd_bridge.torch.SAG" not in out.read_text()  # never carried silently into SAG(lr=...)
    assert "a Paddle LRScheduler has no torch equivalent here" in capsys.readouterr().err
    (change,) = json.loads(report.read_text())["files"][0]["changes"]
    assert change["kind"] == "report" and "torch.optim.lr_scheduler by hand" in change["reason"]


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.py"
    target.write_text("old\n")
    target.chmod(0o755)

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write(target, b"new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.py"]  # no temp file left behind
    monkeypatch.undo()
    atomic_write(target, b"new\n")
    assert target.read_text() == "new\n" and target.stat().st_mode & 0o777 == 0o755


def test_with_paconvert_gives_a_whole_paddle_program(tmp_path: Path) -> None:
    src = tmp_path / "t.py"
    src.write_text(
        "import torch\n\nw = torch.nn.Parameter(torch.zeros(3))\n"
        "opt = torch.optim.ASGD([w], lr=0.1)\nopt.step()\nprint(opt.state[w])\n"
    )
    assert run(str(src), "-o", str(tmp_path / "p.py"), "--with-paconvert", "-q") == 0
    out = (tmp_path / "p.py").read_text()
    assert "import torch" not in out and "asgd_bridge.paddle.ASGD(" in out


def test_torch_optim_subtree_runs_and_is_byte_identical_without_asgd(tmp_path: Path) -> None:
    import torch

    root = Path(torch.__file__).parent / "optim"
    outcomes = convert_paths(root, tmp_path / "out")
    assert outcomes and not [o.error for o in outcomes if o.error]
    for o in outcomes:
        if b"ASGD" not in o.path.read_bytes():
            assert o.output is not None and o.output.read_bytes() == o.path.read_bytes()


def test_output_files_keep_the_source_mode(tmp_path: Path) -> None:
    pkg = _tree(tmp_path)
    (pkg / "sub" / "broken.py").unlink()
    (pkg / "train.py").chmod(0o755)
    (pkg / "sub" / "model.py").chmod(0o644)
    assert run(str(pkg), "-o", str(tmp_path / "out"), "-q") == 0
    assert (tmp_path / "out" / "train.py").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "sub" / "model.py").stat().st_mode & 0o777 == 0o644
