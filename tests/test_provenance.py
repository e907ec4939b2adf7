"""Code digests: each workflow script's closure of library modules, checked against what
Python really imports, and digests that change exactly when a reached module changes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import imported_modules, library_modules

import moclip
from moclip.workflow.provenance import code_digest, module_closure

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "workflow_scripts").glob("*.py"))
PACKAGE = Path(moclip.__file__).parent


@pytest.fixture(scope="module")
def imported() -> dict[str, list[str]]:
    return imported_modules(SCRIPTS)


def test_closure_is_what_python_imports(imported):
    for script in SCRIPTS:
        assert module_closure(script, PACKAGE) == imported[script.stem], script.name


def test_every_library_module_is_reached_by_some_rule_or_is_a_tool(imported):
    reached = {m for mods in imported.values() for m in mods}
    # the moclip command's (cli, predict, verify, outputs, untrimmed: demo-long), the user's code's
    # (features: load_features); the Snakefile's and the tests' runner (the parse-time layer)
    tools = {"moclip.cli", "moclip.predict", "moclip.verify", "moclip.outputs", "moclip.dataset.untrimmed"}
    tools |= {"moclip.features"}
    tools |= {m for m in library_modules() if m == "moclip.workflow" or m.startswith("moclip.workflow.")}
    assert set(library_modules()) - tools == reached


def test_package_init_holds_only_the_version_and_lazy_names():
    """The digest leaves ``moclip/__init__.py`` out; that is safe only while it computes
    nothing: the version, and a module ``__getattr__`` that imports the user's calls on first
    use (no workflow script touches them: test_closure_is_what_python_imports)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        names = [t.id for t in node.targets] if isinstance(node, ast.Assign) else []
        is_value = names in (["__version__"], ["_PUBLIC"]) and isinstance(node.value, (ast.Constant, ast.Dict))
        is_lazy = isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
        assert is_doc or is_value or is_lazy, ast.dump(node)
    assert moclip.load_features.__module__ == "moclip.features" and moclip.Features.__module__ == "moclip.features"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        moclip.nope  # noqa: B018


def _package(tmp_path: Path) -> tuple[Path, Path]:
    """A small package ``moclip`` with relative, aliased, function-level and data imports."""
    pkg = tmp_path / "moclip"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "data").mkdir()
    (pkg / "__init__.py").write_text('"""pkg"""\n__version__ = "1"\n')
    (pkg / "a.py").write_text("from . import b\nimport numpy\n")
    (pkg / "b.py").write_text("def f():\n    from moclip.sub import c\n    import moclip.deep.e\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text('__data__ = ("../data",)\nfrom ..d import x\n')
    (pkg / "d.py").write_text("x = 1\n")
    (pkg / "deep").mkdir()
    (pkg / "deep" / "__init__.py").write_text('"""A parent package: its __init__ runs before e."""\nflag = 1\n')
    (pkg / "deep" / "e.py").write_text("z = 3\n")
    (pkg / "unused.py").write_text("y = 2\n")
    (pkg / "data" / "cfg.json").write_text("{}")
    script = tmp_path / "script.py"
    script.write_text("from moclip.a import thing  # noqa\n")
    return script, pkg


def test_closure_follows_every_kind_of_import(tmp_path):
    script, pkg = _package(tmp_path)
    want = ["moclip.a", "moclip.b", "moclip.d", "moclip.deep", "moclip.deep.e", "moclip.sub", "moclip.sub.c"]
    assert module_closure(script, pkg) == want


@pytest.mark.parametrize(
    "edit, changes",
    [
        ("a.py", True),
        ("b.py", True),
        ("sub/c.py", True),
        ("d.py", True),
        ("deep/__init__.py", True),  # named by no import, run by `import moclip.deep.e`
        ("deep/e.py", True),
        ("data/cfg.json", True),
        ("unused.py", False),
        ("__init__.py", False),
    ],
)
def test_digest_changes_exactly_with_what_the_script_reaches(tmp_path, edit, changes):
    script, pkg = _package(tmp_path)
    before = code_digest(script, pkg)
    with open(pkg / edit, "a") as f:
        f.write("\nedited = 1\n" if edit.endswith(".py") else " ")
    assert (code_digest(script, pkg) != before) == changes


@pytest.mark.parametrize(
    "source, edited",
    [
        ("x = 1\n", "# a comment\nx = 1  # another\n\n\n"),  # comments and blank lines
        ("x = 1\n", '"""A module docstring."""\n\nx = 1\n'),
        ("def f(a):\n    return a\n", 'def f(a):\n    """Says what."""\n    return a\n'),
        ("class K:\n    n = 1\n", 'class K:\n    """Says what."""\n\n    n = 1\n'),
        ("y = f(1, 2)\n", "y = f(\n    1,\n    2,\n)\n"),  # a formatter's pass
        ("s = 'a'\n", 's = "a"\n'),
    ],
)
def test_what_does_not_execute_changes_no_digest(tmp_path, source, edited):
    """Comments, docstrings, blank lines and formatting rerun nothing; a string that is not a
    docstring, or any change to what runs, changes the digest."""
    script, pkg = _package(tmp_path)
    (pkg / "d.py").write_text(source)
    before = code_digest(script, pkg)
    (pkg / "d.py").write_text(edited)
    assert code_digest(script, pkg) == before
    for real in (edited + "z = 'docstring-like but assigned'\n", edited.replace("1", "2").replace("'a'", "'b'")):
        if real != edited:
            (pkg / "d.py").write_text(real)
            assert code_digest(script, pkg) != before, real
