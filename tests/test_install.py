"""The install tells the truth: pyproject.toml declares every distribution moclip/ imports,
the package imports with the declared ones alone, the venv is the lock (requirements.txt),
and envs/moclip.yaml is the lock's runtime part with no path that breaks in Snakemake's copy."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import REPO, library_modules
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DECLARED = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
LOCK = REPO / "requirements.txt"
ENV_FILE = REPO / "envs" / "moclip.yaml"
CUDA_PREFIXES = ("nvidia-", "cuda-", "triton")  # what torch's CUDA build brings; PyTorch's CPU build does not


def imported_top_level(package: Path) -> dict[str, list[str]]:
    """{top-level module: [files importing it]} over every absolute import in ``package``,
    lazy imports inside functions included; the standard library and moclip left out."""
    found: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top != "moclip":
                    found.setdefault(top, []).append(str(path.relative_to(REPO)))
    return found


def runtime_closure(requirements: list[Requirement]) -> set[str]:
    """The distributions ``pip install`` of ``requirements`` brings, read from the installed
    packages' metadata (Requires-Dist, markers evaluated here, extras followed)."""
    names: set[str] = set()
    seen: set[tuple[str, frozenset]] = set()
    todo = [(r, "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        names.add(name)
        for line in md.distribution(req.name).requires or []:
            todo += [(Requirement(line), e) for e in ("", *req.extras)]
    return names


def pins(lines) -> dict[str, str]:
    """{name: version} of ``name==version`` lines; comments and blanks skipped."""
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"not an exact pin: {line!r}"
            out[canonicalize_name(name)] = version
    return out


def env_pip_entries() -> list[str]:
    deps = yaml.safe_load(ENV_FILE.read_text())["dependencies"]
    return next(d["pip"] for d in deps if isinstance(d, dict))


def lock_torch_is_installed() -> bool:
    """Whether this venv holds the lock's torch build (not TORCH_INDEX=cpu's or a kept one)."""
    return md.version("torch") == pins(LOCK.read_text().splitlines())["torch"]


def test_pyproject_declares_every_distribution_the_package_imports():
    owners = md.packages_distributions()
    declared = {canonicalize_name(r.name) for r in DECLARED}
    imports = imported_top_level(REPO / "moclip")
    undeclared = {
        module: files
        for module, files in imports.items()
        if not {canonicalize_name(d) for d in owners.get(module, [])} & declared
    }
    assert not undeclared, f"moclip/ imports distributions pyproject.toml does not declare: {undeclared}"
    # and nothing declared that the package never imports
    imported = {canonicalize_name(d) for module in imports for d in owners.get(module, [])}
    assert declared <= imported, f"declared, never imported: {sorted(declared - imported)}"


# Blocks, for the whole process (the package and what its dependencies import), every
# module whose distribution is not in argv[1]: the nearest to an env from `pip install .`
# alone that a venv holding the workflow and test tools allows.
ONLY_DECLARED = r"""
import importlib, importlib.abc, importlib.metadata, json, pkgutil, re, sys
allowed = set(json.loads(sys.argv[1]))
owners = importlib.metadata.packages_distributions()
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()

def blocked(name):
    dists = {norm(d) for d in owners.get(name.partition(".")[0], ())}
    return sorted(dists) if dists and not dists & allowed else None

class Undeclared(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: {blocked(name)} undeclared)", name=name)
        return None

sys.meta_path.insert(0, Undeclared())
import importlib.util
_find_spec = importlib.util.find_spec  # "is it installed?" probes (torch makes some) see it absent
importlib.util.find_spec = lambda name, package=None: None if blocked(name) else _find_spec(name, package)
import moclip
modules = [m.name for m in pkgutil.walk_packages(moclip.__path__, "moclip.")]
for name in modules:
    importlib.import_module(name)
from moclip.cli import main
try:
    main(["--help"])
except SystemExit as e:
    assert e.code == 0, e.code
print(json.dumps(modules))
"""


def test_every_module_imports_with_the_declared_distributions_alone():
    allowed = runtime_closure(DECLARED) | {"moclip"}
    assert "snakemake" not in allowed and "jsonschema" in allowed  # the check blocks something real
    r = subprocess.run(
        [sys.executable, "-c", ONLY_DECLARED, json.dumps(sorted(allowed))], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 0, r.stderr[-3000:]
    modules = json.loads(r.stdout.strip().splitlines()[-1])
    expected = set(library_modules())
    assert expected <= set(modules)


def test_the_venv_is_the_lock():
    """What make installed is the lock, package for package, version for version (the
    torch pair and CUDA packages left out where TORCH_INDEX chose another torch)."""
    lock = pins(LOCK.read_text().splitlines())
    # The venv's own site-packages: setuptools, once imported, puts its vendored packages on sys.path.
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions(path=site)}
    for name in ("moclip", "pip"):
        installed.pop(name, None)
    if not lock_torch_is_installed():
        for d in (lock, installed):
            for name in [n for n in d if n.startswith(CUDA_PREFIXES) or n in ("torch", "torchvision")]:
                del d[name]
    missing = {n: v for n, v in lock.items() if installed.get(n) != v}
    extra = {n: v for n, v in installed.items() if n not in lock}
    assert not missing and not extra, f"not as locked: {missing}; not in the lock: {extra} (make lock?)"


def test_lock_pins_the_pair_and_every_extra():
    lock = pins(LOCK.read_text().splitlines())
    for name in ("torch", "torchvision", "snakemake", "pytest", "jsonschema", "huggingface-hub"):
        assert name in lock
    for extra, reqs in PYPROJECT["project"]["optional-dependencies"].items():
        for r in map(Requirement, reqs):
            assert r.specifier.contains(lock[canonicalize_name(r.name)]), f"{extra}: {r} against the lock"
    for r in DECLARED:
        assert r.specifier.contains(lock[canonicalize_name(r.name)]), f"{r} against the lock"


def test_env_file_has_no_path_that_breaks_in_snakemakes_copy(tmp_path):
    """Snakemake runs the env file from its copy, .snakemake/conda/<hash>.yaml, where a path
    relative to envs/ points elsewhere: every entry is a plain requirement, or a path that
    exists from there."""
    work = tmp_path / "run"
    copy = work / ".snakemake" / "conda" / "0123abcd.yaml"
    copy.parent.mkdir(parents=True)
    shutil.copy(ENV_FILE, copy)
    deps = yaml.safe_load(copy.read_text())["dependencies"]
    entries = [("conda", d) for d in deps if isinstance(d, str)] + [("pip", e) for e in env_pip_entries()]
    for kind, entry in entries:
        words = entry.split()
        if words[0].startswith("-"):  # -r FILE, -e PATH, --requirement=FILE ...
            target = words[-1].partition("=")[2] if "=" in words[-1] else words[-1]
            meant, there = (ENV_FILE.parent / target).resolve(), (copy.parent / target).resolve()
            assert there == meant and there.exists(), f"{ENV_FILE.name}: {entry!r} does not resolve from {copy}"
        elif kind == "pip":
            req = Requirement(entry)
            assert not req.url, f"{ENV_FILE.name}: {entry!r}: a URL or path"
        else:
            assert "/" not in entry and not entry.startswith("."), f"{ENV_FILE.name}: {entry!r}: a path"


def test_env_file_is_the_locks_runtime_part():
    lock = pins(LOCK.read_text().splitlines())
    env = pins(env_pip_entries())
    differ = {n: (v, lock.get(n)) for n, v in env.items() if lock.get(n) != v}
    assert not differ, f"{ENV_FILE.name} against the lock (env, lock): {differ} (make lock)"
    if lock_torch_is_installed():  # the closure read here is of the lock's torch build
        closure = runtime_closure(DECLARED)
        assert set(env) == closure, f"missing: {sorted(closure - set(env))}; not runtime: {sorted(set(env) - closure)}"
    conda = [d for d in yaml.safe_load(ENV_FILE.read_text())["dependencies"] if isinstance(d, str)]
    assert conda == [
        f"python={sys.version_info[0]}.{sys.version_info[1]}",
        "pip",
    ]  # the Python the lock was resolved for


@pytest.mark.parametrize("entry", ["-r ../requirements.txt", "-e .."])
def test_the_path_check_catches_the_old_relative_entries(tmp_path, entry, monkeypatch):
    """The entries the env file held before the lock: each resolves inside .snakemake/."""
    old = tmp_path / "envs" / "moclip.yaml"
    old.parent.mkdir()
    old.write_text(yaml.safe_dump({"dependencies": ["python=3.11", "pip", {"pip": [entry]}]}))
    monkeypatch.setattr(sys.modules[__name__], "ENV_FILE", old)
    with pytest.raises(AssertionError, match="does not resolve"):
        test_env_file_has_no_path_that_breaks_in_snakemakes_copy(tmp_path / "t")


def test_the_editable_install_prints_no_warning_box(tmp_path):
    """`pip install -e .` (make's last step) builds setuptools' editable wheel: with the
    repository root as the package dir it is a plain .pth, and setuptools prints none of
    its ``****`` warning boxes (one warned on every fresh install before: folders named
    like the package may shadow it)."""
    import zipfile

    src = tmp_path / "src"
    shutil.copytree(REPO / "moclip", src / "moclip", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "schemas", src / "schemas")
    for name in ("pyproject.toml", "README.md", "config.yaml"):
        shutil.copy(REPO / name, src / name)
    code = "import sys; from setuptools import build_meta; print(build_meta.build_editable(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=src, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "****" not in out.stdout + out.stderr, out.stdout + out.stderr
    with zipfile.ZipFile(tmp_path / out.stdout.split()[-1]) as wheel:
        names = wheel.namelist()
        pth = [n for n in names if n.endswith(".pth")]
        assert len(pth) == 1 and not [n for n in names if n.endswith("_finder.py")], names
        assert wheel.read(pth[0]).decode().strip() == str(src)
