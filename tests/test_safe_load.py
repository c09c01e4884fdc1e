"""Files from outside run no code: safe_load equals paddle.load / torch.load on benign files and refuses
hostile pickles (in every format, through every CLI argument that takes a path, in a subprocess); the
checkpoint CLI never overwrites its input by accident and writes files with open()'s mode; the PaConvert
child never imports from the repository it converts."""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import pytest
import torch

from asgd_bridge import safe_load
from asgd_bridge.paddle import ASGD as PaddleASGD
from asgd_bridge.paddle import SAG as PaddleSAG
from asgd_bridge.safe_load import UnsafeFileError, UnsafeLoadWarning

paddle.set_device("cpu")

CLI = [sys.executable, "-m", "asgd_bridge.cli", "checkpoint", "convert"]
ERROR = "asgd-bridge checkpoint convert: error: "


# ------------------------------------------------------------------- benign files: equal to paddle.load


def _trained_paddle() -> tuple[paddle.nn.Layer, PaddleASGD, PaddleSAG]:
    paddle.seed(0)
    model = paddle.nn.Linear(3, 2)
    asgd = PaddleASGD(learning_rate=0.1, parameters=model.parameters(), t0=1.0)
    sag = PaddleSAG(learning_rate=0.1, parameters=model.parameters(), batch_num=2)
    for _ in range(3):
        model(paddle.randn([4, 3])).sum().backward()
        asgd.step()
        sag.step()
        asgd.clear_grad()
    return model, asgd, sag


def _benign_objects() -> dict[str, Any]:
    model, asgd, sag = _trained_paddle()
    return {
        "asgd": asgd.state_dict(),
        "sag": sag.state_dict(),
        "model": model.state_dict(),
        "nested": {
            "a": {"b": [paddle.to_tensor(1.0), (paddle.ones([2]), 3)]},
            "c": collections.OrderedDict(x=paddle.zeros([1], dtype="int64")),
            "s": "text",
            "f": 1.5,
            "n": None,
        },
        "zero_d": {"z": paddle.to_tensor(3.0), "i": paddle.to_tensor(7, dtype="int32")},
        "half": {
            "bf16": paddle.arange(4, dtype="float32").astype("bfloat16"),
            "fp16": paddle.ones([3], "float16"),
        },
        "tensor": paddle.arange(6, dtype="float64").reshape([2, 3]),
        "plain": [paddle.ones([2]), {1, 2}, 1 + 2j, np.float32(3.0), np.int64(2), np.arange(3)],
    }


def _assert_same(got: Any, want: Any, where: str) -> None:
    assert type(got) is type(want), where
    if isinstance(want, paddle.Tensor):
        assert (got.dtype, got.shape, got.name) == (want.dtype, want.shape, want.name), where
        assert str(got.place) == str(want.place), where
        np.testing.assert_array_equal(got.astype("float64").numpy(), want.astype("float64").numpy(), where)
    elif isinstance(want, dict):
        assert list(got) == list(want), where
        for key in want:
            _assert_same(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype, where
        np.testing.assert_array_equal(got, want, where)
    else:
        assert got == want, where


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_paddle_files_load_as_paddle_load_loads_them(tmp_path: Path, protocol: int) -> None:
    for name, obj in _benign_objects().items():
        for suffix in (".pdopt", ".pdparams", ".bin"):
            path = tmp_path / f"{name}{suffix}"
            paddle.save(obj, str(path), protocol=protocol)
            _assert_same(safe_load.load(path), paddle.load(str(path)), f"{name}{suffix} protocol {protocol}")


def test_paddle_protocols_write_only_allowlisted_globals(tmp_path: Path) -> None:
    """Every global paddle.save writes (protocols 2-4) is in the allowlist, and the allowlist is small."""
    seen: set[tuple[str, str]] = set()

    class Recorder(pickle.Unpickler):  # the full unpickler on files this test made, noting each global
        def find_class(self, module: str, name: str) -> Any:
            seen.add((module, name))
            return super().find_class(module, name)

    for protocol in (2, 3, 4):
        for obj in _benign_objects().values():
            buf = io.BytesIO()
            paddle.save(obj, buf, protocol=protocol)
            buf.seek(0)
            Recorder(buf, encoding="latin1").load()
    assert seen and seen <= safe_load.PADDLE_SAFE_GLOBALS
    assert ("numpy", "ndarray") in seen and ("_codecs", "encode") in seen  # protocol 2 bytes
    assert not {m for m, _ in safe_load.PADDLE_SAFE_GLOBALS} - {
        "_codecs", "numpy", "numpy.core.multiarray", "numpy._core.multiarray", "builtins", "__builtin__",
        "collections",
    }  # fmt: skip


def test_torch_files_load_as_weights_only_and_suffixes_are_sniffed(tmp_path: Path) -> None:
    opt = torch.optim.ASGD([torch.nn.Parameter(torch.ones(3))], lr=0.1)
    opt.param_groups[0]["params"][0].grad = torch.ones(3)
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    torch.save(opt.state_dict(), tmp_path / "opt.ckpt")
    torch.save(opt.state_dict(), tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
    paddle.save({"w": paddle.ones([2])}, str(tmp_path / "p.ckpt"))
    want = torch.load(tmp_path / "opt.pt", weights_only=True)
    for name in ("opt.pt", "opt.ckpt", "legacy.ckpt"):
        got = safe_load.load(tmp_path / name)
        torch.testing.assert_close(got["state"], want["state"])
        assert got["param_groups"] == want["param_groups"]
    assert [safe_load.detect_framework(tmp_path / n) for n in ("opt.ckpt", "legacy.ckpt", "p.ckpt")] == [
        "torch",
        "torch",
        "paddle",
    ]
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(pickle.UnpicklingError, match="junk.ckpt: neither a torch file"):
        safe_load.load(tmp_path / "junk.ckpt")
    with pytest.raises(ValueError, match="framework must be"):
        safe_load.load(tmp_path / "opt.pt", "jax")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- hostile files


class _Payload:
    """Unpickling this creates ``marker`` (``open(marker, "w")``): the proof that a load ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


REFUSED = f"{open.__module__}.{open.__qualname__}"  # io.open


def _hostile_state() -> dict[str, Any]:
    return {"state": {}, "param_groups": [{"params": [0], "lr": 0.1}]}


def _write_hostile(path: Path, marker: Path, fmt: str) -> None:
    """A checkpoint-looking file whose unpickling creates ``marker``, in the way each framework writes."""
    obj = _hostile_state()
    obj["param_groups"][0]["hook"] = _Payload(marker)
    if fmt == "paddle":  # paddle.save pickles with its own dispatch table; the payload rides along
        paddle.save(obj, str(path))
    elif fmt == "torch":
        torch.save(obj, path)
    elif fmt == "torch-raw-zip":  # a hand-made torch zip archive with a raw pickle as data.pkl
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
            zf.writestr("archive/version", "3\n")
    else:
        raise AssertionError(fmt)
    assert not marker.exists()


HOSTILE = [  # (file name, how it is written)
    ("evil.pdopt", "paddle"),
    ("evil.pdparams", "paddle"),
    ("evil.ckpt", "paddle"),
    ("evil.pt", "torch"),
    ("evil.pth", "torch-raw-zip"),
]


@pytest.mark.parametrize(("name", "fmt"), HOSTILE)
def test_safe_load_refuses_a_payload_naming_the_global(tmp_path: Path, name: str, fmt: str) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / name
    _write_hostile(path, marker, fmt)
    with pytest.raises(
        UnsafeFileError, match=rf"{name}: refused to load global {REFUSED}.*--unsafe-load"
    ) as e:
        safe_load.load(path)
    assert e.value.global_name == REFUSED and e.value.path == str(path)
    assert isinstance(e.value, pickle.UnpicklingError)
    assert not marker.exists()


def test_safe_load_refuses_what_paddle_save_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "x.pdopt"
    path.write_bytes(pickle.dumps({"a": np.array([object()], dtype=object)}, protocol=2))
    with pytest.raises(UnsafeFileError, match="refused to load global __builtin__.object"):
        safe_load.load(path)
    path.write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}, protocol=4))
    with pytest.raises(UnsafeFileError, match="dtype object"):
        safe_load.load(path)
    # protocol 2 bytes are _codecs.encode(s, "latin1"): any other use of _codecs.encode is refused
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(pickle.UnpicklingError, match="only allowed as pickle protocol 2 writes bytes"):
        safe_load.load(path)
    path.write_bytes(b"\x80\x02X\x01\x00\x00\x00aQ.")  # a persistent id
    with pytest.raises(UnsafeFileError, match="persistent id"):
        safe_load.load(path)
    path.write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(pickle.UnpicklingError, match="not a pickle written by paddle.save"):
        safe_load.load(path)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]}"
    return proc


def _benign_inputs(tmp_path: Path) -> dict[str, Path]:
    """A torch SAG checkpoint and the two models (torch source, Paddle target) a conversion can read."""
    from asgd_bridge.torch import SAG as TorchSAG

    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    opt = TorchSAG(lin.parameters(), lr=0.1, batch_num=2)
    lin(torch.randn(4, 3)).sum().backward()
    opt.step()
    paths = {"input": tmp_path / "opt.pt", "source": tmp_path / "src.pt", "target": tmp_path / "dst.pdparams"}
    torch.save(opt.state_dict(), paths["input"])
    torch.save(lin.state_dict(), paths["source"])
    paddle.save(paddle.nn.Linear(3, 2).state_dict(), str(paths["target"]))
    return paths


#: Runs ``asgd-bridge checkpoint convert`` once per case (argv, cwd) in this one child process (one import of
#: torch and Paddle for all cases) and writes each case's exit status and output as JSON.
_DRIVER = """
import contextlib, io, json, os, sys
from asgd_bridge.cli import main
results = []
for argv, cwd in json.loads(sys.argv[1]):
    os.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
with open(sys.argv[2], "w") as fh:
    json.dump(results, fh)
"""


def _hostile_case(root: Path, role: str, name: str, fmt: str) -> tuple[list[str], Path, Path]:
    """In a fresh folder: benign files, one hostile file in ``role``; the argv, the folder and the marker."""
    root.mkdir()
    paths = _benign_inputs(root)
    marker = root / "marker"
    evil = root / name
    _write_hostile(evil, marker, fmt)
    if role == "input":  # a Paddle file converts towards torch, a torch file towards Paddle
        args = [evil, root / "out.pt"] if fmt == "paddle" else [evil, root / "out.pdopt"]
    else:
        args = [paths["input"], root / "out.pdopt"]
        args += ["--source-model", paths["source"], "--target-model", paths["target"]]
        args[args.index(role) + 1] = evil
    return ["checkpoint", "convert", *map(str, args)], root, marker


def _assert_refused(code: Any, stdout: str, stderr: str, name: str, case: str) -> None:
    assert code == 2, (case, stderr)
    errors = [line for line in stderr.splitlines() if line.startswith(ERROR)]
    assert len(errors) == 1, (case, stderr)
    assert f"{name}: refused to load global {REFUSED}" in errors[0], case
    assert "--unsafe-load" in errors[0] and "wrote" not in stdout, case


def test_cli_refuses_a_payload_in_every_path_argument(tmp_path: Path) -> None:
    """Each hostile format in each path argument: exit 2 naming the global, no marker, no output."""
    cases = []
    for role in ("input", "--source-model", "--target-model"):
        for name, fmt in HOSTILE:
            argv, root, marker = _hostile_case(tmp_path / f"{role.strip('-')}-{name}", role, name, fmt)
            cases.append(
                (f"{name} as {role}", name, argv, root, marker, sorted(p.name for p in root.iterdir()))
            )
    results_file = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps([(c[2], str(c[3])) for c in cases]), str(results_file)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode} (negative: a signal): {proc.stderr[-3000:]}"
    results = json.loads(results_file.read_text())
    assert len(results) == len(cases) == 15
    for (case, name, _, root, marker, before), result in zip(cases, results, strict=True):
        _assert_refused(result["code"], result["stdout"], result["stderr"], name, case)
        assert not marker.exists(), case
        assert sorted(p.name for p in root.iterdir()) == before, case  # no output, no temporary file


@pytest.mark.parametrize(("name", "fmt"), [HOSTILE[0], HOSTILE[3]])
def test_cli_process_exits_2_on_a_payload(tmp_path: Path, name: str, fmt: str) -> None:
    """The installed entry point itself, as its own process: exit status 2, not a signal, not 0."""
    argv, root, marker = _hostile_case(tmp_path / "case", "input", name, fmt)
    proc = _run(argv[2:], root)
    _assert_refused(proc.returncode, proc.stdout, proc.stderr, name, name)
    assert not marker.exists()
    assert not [p for p in root.iterdir() if p.name.startswith(("out", "."))]


def test_unsafe_load_is_real_and_warns(tmp_path: Path) -> None:
    paths = _benign_inputs(tmp_path)
    out = tmp_path / "out.pdopt"
    proc = _run([paths["input"], out, "--target-model", paths["target"], "--unsafe-load"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {out}")
    warned = [line for line in proc.stderr.splitlines() if "can run any code" in line]
    assert len(warned) == 2 and all(
        line.startswith("asgd-bridge checkpoint convert: warning: ") for line in warned
    )
    assert safe_load.load(out)["state"][0]["y"].shape == [2, 3, 2]  # batch_num, paddle Linear [in, out]
    # on a hostile file the flag really runs the pickle: the marker appears (then it is no checkpoint)
    marker = tmp_path / "marker"
    _write_hostile(tmp_path / "evil.pdopt", marker, "paddle")
    proc = _run([tmp_path / "evil.pdopt", tmp_path / "x.pt", "--unsafe-load"], tmp_path)
    assert marker.exists()
    assert proc.returncode == 2 and "can run any code" in proc.stderr  # a file object is not a state dict
    with pytest.warns(UnsafeLoadWarning, match="opt.pt: loading with unsafe=True"):
        safe_load.load(paths["input"], unsafe=True)


# --------------------------------------------------------------------------- output paths


def _convert(args: list[Any]) -> tuple[int, str]:
    from asgd_bridge.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["checkpoint", "convert", *map(str, args)])
    return code, err.getvalue()


def test_output_that_is_the_input_is_refused_unless_in_place(tmp_path: Path) -> None:
    paths = _benign_inputs(tmp_path)
    ckpt = tmp_path / "ckpt.bin"
    ckpt.write_bytes(paths["input"].read_bytes())
    original = ckpt.read_bytes()
    (tmp_path / "link.pdopt").symlink_to(ckpt)
    os.link(ckpt, tmp_path / "hard.pdopt")
    (tmp_path / "sub").mkdir()
    for out in (ckpt, tmp_path / "link.pdopt", tmp_path / "hard.pdopt", tmp_path / "sub" / ".." / "ckpt.bin"):
        code, err = _convert([ckpt, out, "--to", "paddle"])
        assert code == 2 and "is the input file" in err and "--in-place" in err, (out, err)
        assert ckpt.read_bytes() == original
    code, err = _convert([paths["input"], paths["target"], "--target-model", paths["target"]])
    assert code == 2 and "is the --target-model file" in err
    # --in-place through the symlink: the input itself is replaced (the link still points at it)
    code, err = _convert([ckpt, tmp_path / "link.pdopt", "--to", "paddle", "--in-place"])
    assert code == 0, err
    assert (tmp_path / "link.pdopt").is_symlink() and ckpt.read_bytes() != original
    converted = safe_load.load(ckpt, "paddle")
    assert converted["state"][0]["y"].shape == [2, 2, 3]
    code, err = _convert([ckpt, ckpt, "--to", "torch", "--in-place"])
    assert code == 0, err
    back = safe_load.load(ckpt)
    torch.testing.assert_close(
        back["state"][0]["y"], torch.load(paths["input"], weights_only=True)["state"][0]["y"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ckpt.bin", "link.pdopt", "hard.pdopt", "opt.pt", "src.pt", "dst.pdparams", "sub"]
    )


def test_output_mode_follows_the_umask_and_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    paths = _benign_inputs(tmp_path)
    old = os.umask(0o022)
    try:
        assert _convert([paths["input"], tmp_path / "a.pdopt"])[0] == 0
        os.umask(0o077)
        assert _convert([paths["input"], tmp_path / "b.pdopt"])[0] == 0
        (tmp_path / "a.pdopt").chmod(0o640)
        assert _convert([paths["input"], tmp_path / "a.pdopt"])[0] == 0
    finally:
        os.umask(old)
    assert (tmp_path / "b.pdopt").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "a.pdopt").stat().st_mode & 0o777 == 0o640
    old = os.umask(0o022)
    try:
        assert _convert([paths["input"], tmp_path / "c.pdopt"])[0] == 0
    finally:
        os.umask(old)
    assert (tmp_path / "c.pdopt").stat().st_mode & 0o777 == 0o644


def test_wrote_is_printed_only_after_the_write(tmp_path: Path) -> None:
    paths = _benign_inputs(tmp_path)
    blocked = tmp_path / "out"
    (blocked / "out.pdopt").mkdir(parents=True)  # a folder where the file goes: the final rename fails
    proc = _run([paths["input"], blocked / "out.pdopt"], tmp_path)
    assert proc.returncode == 2 and "wrote" not in proc.stdout, (proc.stdout, proc.stderr)
    assert [line for line in proc.stderr.splitlines() if line.startswith(ERROR)], proc.stderr
    assert [p.name for p in blocked.iterdir()] == ["out.pdopt"]  # no temporary file left
    assert not list((blocked / "out.pdopt").iterdir())


# --------------------------------------------------------------------------- the PaConvert child


def test_paconvert_child_never_imports_from_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "paconvert").mkdir(parents=True)
    markers = {name: tmp_path / f"imported-{name}" for name in ("json", "ast", "paconvert")}
    plant = "open({!r}, 'w').close()\n"
    (repo / "json.py").write_text(plant.format(str(markers["json"])))
    (repo / "ast.py").write_text(plant.format(str(markers["ast"])))
    (repo / "paconvert" / "__init__.py").write_text(plant.format(str(markers["paconvert"])))
    (repo / "train.py").write_text(
        "import torch\n\nw = torch.nn.Parameter(torch.zeros(3))\nopt = torch.optim.ASGD([w], lr=0.1)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-m", "asgd_bridge.cli", "convert", "train.py", "-o", str(tmp_path / "out.py"),
         "--with-paconvert", "-q"],
        cwd=repo, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not [name for name, marker in markers.items() if marker.exists()]
    out = (tmp_path / "out.py").read_text()
    assert "import torch" not in out and "asgd_bridge.paddle.ASGD(" in out
