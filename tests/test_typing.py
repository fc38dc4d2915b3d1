"""The shipped type information stays true: the extension's .pyi against the
compiled module (stubtest), and the Python package under mypy."""
import ast
import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import fotabench
from fotabench import _core

ROOT = Path(__file__).resolve().parent.parent

needs_mypy = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                reason="mypy is not installed (make test installs it)")


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=ROOT)


@needs_mypy
def test_core_stub_matches_extension():
    r = run("mypy.stubtest", "fotabench._core")
    assert r.returncode == 0, r.stdout + r.stderr


@needs_mypy
def test_package_type_checks():
    r = run("mypy", "--config-file", str(ROOT / "pyproject.toml"))
    assert r.returncode == 0, r.stdout + r.stderr


def stub_fields(class_name):
    """(name, annotation) of a class's fields in _core.pyi, in order."""
    tree = ast.parse((ROOT / "pymodule/fotabench/_core.pyi").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    return [(a.target.id, ast.unparse(a.annotation)) for a in cls.body
            if isinstance(a, ast.AnnAssign)]


@pytest.mark.parametrize("base,public", [("FlashResultBase", "FlashResult"),
                                         ("WatchdogResultBase", "WatchdogResult")])
def test_result_fields_are_declared_once(base, public):
    """The extension's table is the one declaration: the stub says the same fields and
    types, and the public dataclass takes them from the extension, adding none."""
    c_fields = [(f.name, f.type.__name__) for f in dataclasses.fields(getattr(_core, base))]
    assert c_fields and all(t in ("int", "bool", "str") for _, t in c_fields)
    assert stub_fields(base) == c_fields
    cls = getattr(fotabench, public)
    assert issubclass(cls, getattr(_core, base))
    assert not cls.__dict__.get("__annotations__"), "fields belong in the C table"
    assert [(f.name, f.type.__name__) for f in dataclasses.fields(cls)] == c_fields
    assert getattr(_core, base).__module__ == "fotabench._core"
    # Frozen, as before: a result is a record of what happened.
    r = cls(*[{"int": 0, "bool": False, "str": ""}[t] for _, t in c_fields])
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(r, c_fields[0][0], 1)


def test_watchdog_values_fit_their_fields():
    """What the C core returns has one value per field, of the field's type (a bool is
    a bool, not an int)."""
    r = fotabench.WatchdogMonitor.check([400_000_000 * i for i in range(1, 6)],
                                        start_ns=1, stop_ns=2_200_000_000)
    assert len(_core.WatchdogMonitor(start_ns=1).result()) == len(dataclasses.fields(r))
    for f in dataclasses.fields(r):
        assert type(getattr(r, f.name)) is f.type, f.name
    assert (r.edges, r.over_two_thirds, r.running, r.ok) == (5, False, False, True)
    assert dataclasses.asdict(r)["longest_gap_ns"] == 400_000_000
