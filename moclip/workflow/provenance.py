"""What a workflow script's results depend on in this library, found from its imports.

Snakemake reruns a rule when its script changes, not when a library module the script
imports does. :func:`code_digest` hashes the transitive closure of ``moclip`` modules that
a script reaches through ``import`` statements (anywhere in a module, so function-level
imports count too) and the packages above each (their ``__init__`` runs first), plus the
package data a module declares in ``__data__``. It is read
from the source with :mod:`ast`, never by importing, so it is cheap at parse time, and it
hashes what executes: the syntax tree without docstrings, so a comment, a docstring, blank
lines or a formatter's pass rerun nothing.

The package's ``__init__`` is left out: it holds only the docstring and ``__version__``
(a test keeps it so), and a version bump alone must not rerun a dataset's caches.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

_PACKAGE = "moclip"


def _module_file(package_dir: Path, module: str) -> Path | None:
    """The source file of ``moclip.x.y`` under ``package_dir``, or None if it is not a module there."""
    parts = module.split(".")[1:]
    if not parts:
        return None
    base = package_dir.joinpath(*parts)
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imports(statements, package: str | None) -> set[str]:
    """Full names of every ``moclip`` module the import ``statements`` (:func:`_import_statements`) name.

    ``from moclip.x import y`` names ``moclip.x`` and, if ``y`` is a module, ``moclip.x.y``;
    relative imports resolve against ``package``, the package the module is in (None for a
    script outside the package).
    """
    names: set[str] = set()
    for level, module, aliases in statements:
        if level:
            if package is None:
                continue
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - level + 1])
            source = f"{base}.{module}" if module else base
        elif module is None:  # import a, b
            names.update(aliases)
            continue
        else:
            source = module
        names.add(source)
        names.update(f"{source}.{a}" for a in aliases)
    return {n for n in names if n == _PACKAGE or n.startswith(_PACKAGE + ".")}


def _import_statements(tree: ast.Module) -> list[tuple[int, str | None, tuple[str, ...]]]:
    """Every import statement of ``tree`` as (level, module, names): ``import a, b`` as
    (0, None, ("a", "b")), ``from .x import y`` as (1, "x", ("y",))."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.append((0, None, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module, tuple(a.name for a in node.names)))  # module: None only if level
    return out


def _declared_data(tree: ast.Module) -> tuple[str, ...]:
    """The module-level ``__data__ = ("dir", "file", ...)`` of a module, if any."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__data__" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    return ()


_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def executable_form(tree: ast.Module) -> bytes:
    """What of a module executes: its syntax tree without docstrings, line numbers or
    formatting (comments never reach the tree), as bytes to hash. The docstrings are deleted
    from ``tree`` in place: pass a tree no one else reads (:func:`_parse`'s own)."""
    for node in ast.walk(tree):
        first = node.body[0] if isinstance(node, _DOCUMENTED) and node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            del node.body[0]
    return ast.dump(tree, annotate_fields=False, include_attributes=False).encode()


@dataclass(frozen=True)
class _Source:
    """What the digests read of one file, read once a version of it."""

    executable: bytes  # executable_form
    statements: tuple  # _import_statements
    data: tuple[str, ...]  # _declared_data


@functools.lru_cache(maxsize=256)
def _parse(path: str, mtime_ns: int, size: int) -> _Source:
    tree = ast.parse(Path(path).read_bytes(), filename=path)
    statements, data = tuple(_import_statements(tree)), _declared_data(tree)
    return _Source(executable_form(tree), statements, data)  # the tree is this call's own: no copy


def _parsed(path: Path) -> _Source:
    """A file's :class:`_Source`, parsed once a version (every rule's closure shares the same
    few modules; the key changes when the file does)."""
    st = path.stat()
    return _parse(str(path), st.st_mtime_ns, st.st_size)


def module_closure(script: Path | str, package_dir: Path | str) -> list[str]:
    """Sorted names of the ``moclip`` modules that ``script`` reaches through its imports."""
    package_dir = Path(package_dir)
    seen: set[str] = set()
    todo = [(Path(script), None)]
    while todo:
        path, name = todo.pop()
        package = name if name is None or path.name == "__init__.py" else name.rpartition(".")[0]
        for m in _with_parents(_imports(_parsed(path).statements, package)):
            f = _module_file(package_dir, m)
            if f is not None and m not in seen:
                seen.add(m)
                todo.append((f, m))
    return sorted(seen)


def _with_parents(names: set[str]) -> set[str]:
    """``names`` and every package above each (``moclip.a.b`` -> ``moclip.a``): importing a
    module executes its parents' ``__init__`` first, so they are reached too."""
    return {".".join(n.split(".")[:k]) for n in names for k in range(2, n.count(".") + 2)}


def code_digest(script: Path | str, package_dir: Path | str) -> str:
    """A short sha256 of what executes in every module that ``script`` reaches (and of the
    bytes of the data they declare)."""
    package_dir = Path(package_dir)
    h = hashlib.sha256()
    for m in module_closure(script, package_dir):
        f = _module_file(package_dir, m)
        source = _parsed(f)
        h.update(f"{m}\0".encode() + source.executable)
        for entry in source.data:
            root = f.parent / entry
            for d in sorted(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()):
                h.update(f"{d.relative_to(package_dir).as_posix()}\0".encode() + d.read_bytes())
    return h.hexdigest()[:16]
