"""The file and run side of ``asgd-bridge convert``: exit status, trees (copies, notebooks, configs),
isolation of each file, lossless writes (BOM, line endings, links, modes) and patches that apply."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from asgd_bridge.convert import cli
from asgd_bridge.convert.configs import PADDLE_TARGET, convert_config
from asgd_bridge.convert.files import unified_diff
from asgd_bridge.convert.isolate import IsolationFailure, Limits, run_isolated
from asgd_bridge.convert.paconvert import PaConvertResult, _check

SRC = "import torch\n\nopt = torch.optim.ASGD(model.parameters(), lr=0.1)\nuse(opt)\n"
CONVERTED_CALL = "asgd_bridge.paddle.ASGD(parameters=model.parameters(), learning_rate=0.1"
REPORTED = "import torch\n\nopt = torch.optim.ASGD(ps, foo=1)\n"  # an unknown keyword: reported, unchanged


def run(*argv: str) -> int:
    return cli.main(list(argv))


# --------------------------------------------------------------------------------------- exit status
def test_exit_status_is_documented_in_the_help() -> None:
    parser = cli.argparse.ArgumentParser()
    sub = cli.register(parser.add_subparsers())
    text = sub.format_help()
    for code in ("0  done", "1  something is left to do by hand", "2  an error"):
        assert code in text
    docs = (Path(__file__).parents[1] / "docs" / "migration.md").read_text()
    assert "| 0 |" in docs and "| 1 |" in docs and "| 2 |" in docs


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (SRC, 0),  # converted, nothing left
        ("import torch\nx = torch.zeros(3)\n", 0),  # nothing to do
        (REPORTED, 1),  # reported: left to do by hand
        ("import torch\nopt = torch.optim.ASGD(\n", 2),  # invalid Python
    ],
)
def test_exit_status_says_what_is_left(tmp_path: Path, source: str, expected: int) -> None:
    src = tmp_path / "t.py"
    src.write_text(source)
    assert run(str(src), "-o", str(tmp_path / "o.py"), "-q") == expected


def test_report_to_an_unwritable_path_fails_before_any_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "t.py"
    src.write_text(SRC)
    (tmp_path / "file.txt").write_text("not a folder\n")
    out = tmp_path / "out.py"
    assert run(str(src), "-o", str(out), "--report", str(tmp_path / "file.txt" / "r.json")) == 2
    err = capsys.readouterr().err
    assert "--report" in err and "is not a folder" in err and "Traceback" not in err
    assert not out.exists()
    assert run(str(src), "-o", str(out), "--report", str(tmp_path)) == 2  # a folder
    assert not out.exists()


def test_with_paconvert_lists_unconverted_lines_with_real_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "train.py").write_text(
        "import torch\n\nw = torch.nn.Parameter(torch.zeros(3))\nopt = torch.optim.ASGD([w], lr=0.1)\n"
        "g = torch.fx.symbolic_trace(model)\n"
    )
    (pkg / "README.md").write_text("# how to train\n")
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert run(str(pkg), "-o", str(out), "--with-paconvert", "--report", str(report)) == 1
    err = capsys.readouterr().err
    text = (out / "train.py").read_text()
    marked = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith(">>>>>>")]
    assert marked and f"{out / 'train.py'}:{marked[0]}: PaConvert could not convert" in err
    assert (out / "README.md").read_text() == "# how to train\n"
    data = json.loads(report.read_text())
    assert data["exit_status"] == 1 and data["totals"]["todo"] == len(marked)
    (entry,) = [f for f in data["files"] if f["path"].endswith("train.py")]
    assert entry["output"] == str(out / "train.py") and Path(entry["output"]).exists()
    assert [f["line"] for f in entry["findings"]] == marked


@pytest.mark.parametrize(
    ("text", "unsupported", "invalid"),
    [
        ("import paddle\nx = 1\n", [], []),
        ("import paddle\n>>>>>>y = torch.fx.symbolic_trace(m)\n", [2], []),
        ("import paddle\nfrom  import x\n", [], [2]),  # a mangled import nobody marked
    ],
)
def test_paconvert_outputs_are_compiled(text: str, unsupported: list[int], invalid: list[int]) -> None:
    result = PaConvertResult([], [], "")
    _check(text.encode(), Path("t.py"), result)
    assert [line for _, line in result.unsupported] == unsupported
    assert [line for _, line, _, _ in result.invalid] == invalid


# --------------------------------------------------------------------------------------- trees
NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["We train with torch.optim.ASGD(ps).\n"]},
        {
            "cell_type": "code",
            "execution_count": 3,
            "metadata": {"tags": ["train"]},
            "outputs": [{"name": "stdout", "output_type": "stream", "text": ["ASGD ready\n"]}],
            "source": ["%matplotlib inline\n", "!pip install torch\n", "import torch\n",
                       "opt = torch.optim.ASGD(model.parameters(), lr=0.1)"],
        },
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
         "source": "%%bash\necho torch.optim.ASGD"},
        {"cell_type": "code", "execution_count": 4, "metadata": {}, "outputs": [], "source": ["x = 1\n"]},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 ÿ"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip


def _nb_text(nb: dict) -> str:
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _repo(root: Path) -> Path:
    (root / "repo" / "conf").mkdir(parents=True)
    (root / "repo" / ".github").mkdir()
    (root / "repo" / "train.py").write_text(SRC)
    (root / "repo" / "README.md").write_text("Uses torch.optim.ASGD.\n")
    (root / "repo" / "LICENSE").write_text("MIT\n")
    (root / "repo" / "run.sh").write_text("#!/bin/sh\npython train.py\n")
    (root / "repo" / "run.sh").chmod(0o755)
    (root / "repo" / "data.bin").write_bytes(bytes(range(256)))
    (root / "repo" / ".github" / "ci.yml").write_text("on: push\n")
    (root / "repo" / "conf" / "optim.yaml").write_text(
        "# the optimizer\noptimizer:\n  _target_: torch.optim.ASGD  # averaged\n  lr: 0.1\n"
    )
    (root / "repo" / "conf" / "other.yaml").write_text("optimizer: ASGD\n")
    (root / "repo" / "conf" / "plain.json").write_text('{"_target_": "torch.optim.SGD"}\n')
    (root / "repo" / "nb.ipynb").write_text(_nb_text(NOTEBOOK))
    return root / "repo"


def test_tree_copies_every_other_file_and_converts_notebooks_and_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _repo(tmp_path)
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert run(str(repo), "-o", str(out), "--report", str(report)) == 1  # other.yaml: left to do
    for name in ("README.md", "LICENSE", "run.sh", "data.bin", ".github/ci.yml", "conf/plain.json"):
        assert (out / name).read_bytes() == (repo / name).read_bytes(), name
    assert (out / "run.sh").stat().st_mode & 0o777 == 0o755
    assert CONVERTED_CALL in (out / "train.py").read_text()
    # the config: only the target's value changes
    assert (out / "conf" / "optim.yaml").read_text() == (
        f"# the optimizer\noptimizer:\n  _target_: {PADDLE_TARGET}  # averaged\n  lr: 0.1\n"
    )
    assert (out / "conf" / "other.yaml").read_text() == "optimizer: ASGD\n"
    err = capsys.readouterr().err
    assert f"{repo / 'conf' / 'optim.yaml'}:3:13: config:" in err
    assert f"{repo / 'conf' / 'other.yaml'}:1:" in err
    # the notebook: the code cell converted, magics, outputs, metadata and other cells untouched
    nb = json.loads((out / "nb.ipynb").read_text())
    cells, old = nb["cells"], NOTEBOOK["cells"]
    assert cells[0] == old[0] and cells[2] == old[2] and cells[3] == old[3]
    assert cells[1]["outputs"] == old[1]["outputs"] and cells[1]["metadata"] == old[1]["metadata"]
    assert cells[1]["source"][:2] == ["%matplotlib inline\n", "!pip install torch\n"]
    assert CONVERTED_CALL in "".join(cells[1]["source"])
    assert nb["metadata"] == NOTEBOOK["metadata"]
    assert (out / "nb.ipynb").read_text() == _nb_text(nb)  # the file's own JSON layout
    data = json.loads(report.read_text())
    assert data["totals"]["copied"] == 4  # README, LICENSE, run.sh, data.bin
    (nb_entry,) = [f for f in data["files"] if f["path"].endswith("nb.ipynb")]
    assert {c["cell"] for c in nb_entry["changes"]} == {1}


def test_a_notebook_given_directly_is_a_notebook(tmp_path: Path) -> None:
    nb = tmp_path / "nb.ipynb"
    text = json.dumps(NOTEBOOK, indent=2) + "\n"  # another layout, kept
    nb.write_text(text)
    assert run(str(nb), "--in-place", "-q") == 0
    new = nb.read_text()
    assert CONVERTED_CALL in new and new.startswith('{\n  "cells": [')
    assert run(str(nb), "--check", "-q") == 0  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "optimizer:\n  _target_: torch.optim.SGD\n",
        "# we tried torch.optim.ASGD once\nlr: 0.1\n",
        "_target_: torch.optim.ASGDx\n",
        "_target_: mylib.torch.optim.ASGD\n",
        "name: ASGD_variant\n",
        '{"_target_": "torch.optim.Adam", "lr": 0.1}\n',
    ],
)
def test_configs_left_alone(text: str) -> None:
    assert convert_config(text) == (text, [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("_target_: torch.optim.ASGD\r\n", f"_target_: {PADDLE_TARGET}\r\n"),
        ("- _target_: 'torch.optim.asgd.ASGD'\n", f"- _target_: '{PADDLE_TARGET}'\n"),
        ('{"_target_": "torch.optim.ASGD", "lr": 0.1}', f'{{"_target_": "{PADDLE_TARGET}", "lr": 0.1}}'),
    ],
)
def test_configs_hydra_target_converted(text: str, expected: str) -> None:
    new, (change,) = convert_config(text)
    assert new == expected and change.kind == "config" and change.line == 1


@pytest.mark.parametrize(
    "text",
    [
        "optimizer: ASGD\n",
        "cls: torch.optim.ASGD\n",
        '{"opt": "ASGD"}\n',
        "_target_: paddle.optimizer.ASGD\n",
    ],
)
def test_configs_mentions_reported(text: str) -> None:
    to = "torch" if "paddle" in text else "paddle"
    new, (change,) = convert_config(text, to)
    assert new == text and change.kind == "report" and change.line == 1


def test_the_config_target_takes_torch_arguments() -> None:
    import importlib

    import paddle

    module, _, name = PADDLE_TARGET.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    w = paddle.create_parameter([3], "float32")
    opt = cls(params=[w], lr=0.1, lambd=0.0, alpha=0.5, t0=10.0, weight_decay=0.01)  # Hydra passes keywords
    assert opt.get_lr() == pytest.approx(0.1)


# --------------------------------------------------------------------------------------- isolation
def _segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def _square(x: int) -> int:
    return x * x


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def test_a_crashing_job_loses_only_itself() -> None:
    jobs = [(3,), (), (4,), (30.0,)]
    funcs = {0: _square, 1: _segfault, 2: _square, 3: _sleep}
    got = {}
    for i, func in funcs.items():
        for _, value in run_isolated(func, [jobs[i]], Limits(seconds=2.0, memory=None)):
            got[i] = value
    assert got[0] == 9 and got[2] == 16
    assert isinstance(got[1], IsolationFailure) and "SIGSEGV" in got[1].message
    assert isinstance(got[3], IsolationFailure) and got[3].kind == "timeout"


def test_pathological_and_oversized_files_do_not_lose_the_run(tmp_path: Path) -> None:
    # 100k and 20k nested parentheses once crashed libcst (SIGSEGV) or took > 20 GB; Python's own
    # parser refuses them first now (at its position). A valid 200 KB file under an 80 MiB per-file
    # limit makes libcst's native allocator abort in its child: that file is lost, not the run.
    src = tmp_path / "src"
    src.mkdir()
    head = "import torch\nopt = torch.optim.ASGD(ps)\nx = "
    (src / "deep.py").write_text(head + "(" * 100_000 + "1" + ")" * 100_000 + "\n")
    (src / "huge.py").write_text(head + "(" * 20_000 + "1" + ")" * 20_000 + "\n")
    body = "".join(f"v{i} = [{i}, {i + 1}, (a{i} + b{i}) * c{i}]\n" for i in range(4000))
    (src / "big.py").write_text("import torch\nopt = torch.optim.ASGD(ps)\n" + body)
    (src / "ok.py").write_text(SRC)
    (src / "notes.txt").write_text("kept\n")
    cmd = [sys.executable, "-m", "asgd_bridge.convert", str(src), "-o", str(tmp_path / "out")]
    proc = subprocess.run(
        [*cmd, "--max-memory", "80", "--timeout", "60", "-q"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr  # a signal death of the command would be negative
    for name in ("deep.py", "huge.py"):
        assert f"{src / name}:3:" in proc.stderr
    assert "invalid Python: too many nested parentheses" in proc.stderr
    assert f"{src / 'big.py'}: crashed the converter (SIGABRT" in proc.stderr
    assert "80 MiB per-file memory limit" in proc.stderr
    assert CONVERTED_CALL in (tmp_path / "out" / "ok.py").read_text()
    assert (tmp_path / "out" / "notes.txt").read_text() == "kept\n"
    for name in ("deep.py", "huge.py", "big.py"):
        assert not (tmp_path / "out" / name).exists()


# --------------------------------------------------------------------------------------- lossless files
@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("bom", ("\ufeff" + SRC).encode()),
        ("crlf", SRC.replace("\n", "\r\n").encode()),
        ("cr", SRC.replace("\n", "\r").encode()),
        ("no_final_newline", SRC.rstrip("\n").encode()),
    ],
)
def test_bom_and_line_endings_kept(tmp_path: Path, name: str, data: bytes) -> None:
    src = tmp_path / "t.py"
    src.write_bytes(data)
    assert run(str(src), "--in-place", "-q") == 0
    new = src.read_bytes()
    assert CONVERTED_CALL.encode() in new
    assert new.startswith(b"\xef\xbb\xbf") == (name == "bom")
    assert (b"\r\n" in new) == (name == "crlf")
    assert (b"\n" not in new) == (name == "cr")
    assert new.endswith({"cr": b"\r", "crlf": b"\r\n", "no_final_newline": b")\nuse(opt)"}.get(name, b"\n"))


def test_symlink_in_place_converts_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    (tmp_path / "real.py").write_text(SRC)
    link = tmp_path / "link.py"
    link.symlink_to("real.py")
    assert run(str(link), "--in-place", "-q") == 0
    assert link.is_symlink() and os.readlink(link) == "real.py"
    assert CONVERTED_CALL in (tmp_path / "real.py").read_text()


def test_symlinks_in_trees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text(SRC)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text(SRC)
    (repo / "alias.py").symlink_to("a.py")
    (repo / "far.py").symlink_to(outside)
    out = tmp_path / "out"
    assert run(str(repo), "-o", str(out), "-q") == 0
    assert (out / "alias.py").is_symlink() and os.readlink(out / "alias.py") == "a.py"
    assert CONVERTED_CALL in (out / "far.py").read_text() and not (out / "far.py").is_symlink()
    assert run(str(repo), "--in-place", "-q") == 2  # the link leaving the tree is refused
    assert "far.py: a link to outside the tree" in capsys.readouterr().err
    assert (repo / "far.py").is_symlink() and outside.read_text() == SRC
    assert (repo / "alias.py").is_symlink() and CONVERTED_CALL in (repo / "a.py").read_text()


def test_hard_links_are_not_split(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text(SRC)
    os.link(repo / "a.py", repo / "b.py")
    out = tmp_path / "out"
    assert run(str(repo), "-o", str(out), "-q") == 0
    assert os.path.samefile(out / "a.py", out / "b.py")
    inode = (repo / "a.py").stat().st_ino
    assert run(str(repo), "--in-place", "-q") == 0
    assert (repo / "a.py").stat().st_ino == inode and os.path.samefile(repo / "a.py", repo / "b.py")
    assert CONVERTED_CALL in (repo / "b.py").read_text()


def test_read_only_files_need_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "t.py"
    src.write_text(SRC)
    src.chmod(0o444)
    assert run(str(src), "--in-place", "-q") == 2
    assert "read-only" in capsys.readouterr().err and src.read_text() == SRC
    assert run(str(src), "--in-place", "--force", "-q") == 0
    assert CONVERTED_CALL in src.read_text() and stat.S_IMODE(src.stat().st_mode) == 0o444


@pytest.mark.parametrize(
    "data",
    [
        SRC.rstrip("\n").encode(),  # no final newline
        SRC.replace("\n", "\r\n").encode(),
        ("\ufeff" + SRC).encode(),
        SRC.replace("\n", "\r").encode(),  # CR only: one line for patch(1)
    ],
)
def test_diff_is_a_patch_that_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "t.py").write_bytes(data)
    (tmp_path / "src" / "plain.py").write_text("x = 1")
    monkeypatch.chdir(tmp_path)
    assert run("src", "--diff", "-q") == 0
    patch = capsys.readouterr().out
    assert run("src", "-o", "converted", "-q") == 0
    shutil.copytree("src", "applied/src")
    (tmp_path / "p.diff").write_text(patch, newline="")
    tool = ["patch", "-p1", "--quiet", "-i"] if shutil.which("patch") else ["git", "apply", "-p1"]
    subprocess.run(
        [*tool, str(tmp_path / "p.diff")], cwd=tmp_path / "applied", check=True, capture_output=True
    )
    assert (tmp_path / "applied" / "src" / "t.py").read_bytes() == (
        tmp_path / "converted" / "t.py"
    ).read_bytes()
    assert (tmp_path / "applied" / "src" / "plain.py").read_text() == "x = 1"


def test_unified_diff_marks_a_missing_final_newline() -> None:
    diff = unified_diff("a\nb", "a\nc", "f.py")
    assert diff.endswith("-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n")
    assert unified_diff("a\n", "a\n", "f.py") == ""


def test_children_do_not_rerun_the_callers_script(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(SRC)
    script = (
        "import sys\nfrom pathlib import Path\nfrom asgd_bridge.convert.files import convert_paths\n"
        "print('main ran', flush=True)\n"
        f"(o,) = convert_paths(Path({str(tmp_path / 't.py')!r}), Path({str(tmp_path / 'o.py')!r}))\n"
        "sys.exit(1 if o.error else 0)\n"
    )
    for argv in (["-c", script], ["-"]):  # no script file, and a script read from stdin
        proc = subprocess.run(
            [sys.executable, *argv], input=script, capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("main ran") == 1
    (tmp_path / "script.py").write_text(script)  # a script without a main guard
    proc = subprocess.run(
        [sys.executable, "script.py"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stdout.count("main ran") == 1, proc.stderr
