"""Imports flow one way (issue 16): the layers below, bottom to top, hold for every module of the package.

Three rules, read from the source with `ast` (nothing is imported, so a missing TVM changes nothing):
- a module imports only modules of its own layer or a lower one (imports under `if TYPE_CHECKING:` are
  annotations only and are not counted);
- only the runtime adapters (featcomp.runtime_ops) import ONNX Runtime or TVM at module level, so a missing
  optional backend never breaks the rest;
- no module imports another module's private (underscore) name, by `from m import _x` or as `m._x`.
A new module must be placed in LAYERS. The checker itself is tested on synthetic trees, so it can fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pyproject's [tool.setuptools.package-dir]: the import name of each source folder
SOURCES = {"featcomp": ROOT / "featcomp", "featcomp.passes": ROOT / "passes", "featcomp.runtime_ops": ROOT / "runtime_ops"}

# Bottom to top. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors", ("featcomp.errors",)),
    ("quality policy: typed targets and outcome", ("featcomp.quality",)),
    ("numeric: numpy references, no model files", ("featcomp.codecs", "featcomp.preprocess", "featcomp.jpeg.dct")),
    ("io: readers, model load/validate/save, JPEG tables", ("featcomp.data", "featcomp.modelio", "featcomp.jpeg.tables")),
    ("ops: schemas and ONNX function bodies", ("featcomp.ops",)),
    ("passes: graph edits", ("featcomp.passes",)),
    ("runtime adapters: ONNX Runtime, TVM", ("featcomp.runtime_ops",)),
    ("allocation", ("featcomp.allocate", "featcomp.budget")),
    ("features: report, learned JPEG, deploy, zoo", ("featcomp.reporting", "featcomp.jpeg", "featcomp.deploy",
                                                     "featcomp.zoo")),
    ("public api", ("featcomp", "featcomp.api", "featcomp.sweep")),
    ("cli helpers", ("featcomp.cli_common",)),
    ("subcommands loaded by name", ("featcomp.sweep_cli", "featcomp.jpeg.cli", "featcomp.deploy.compile_cli",
                                    "featcomp.deploy.run_cli")),
    ("cli", ("featcomp.cli", "featcomp.__main__")),
]
ADAPTERS = ("featcomp.runtime_ops",)
# Codec maths stays in featcomp.codecs: other modules use a codec through the protocol and registry
# (featcomp.codecs, featcomp.codecs.base) and never import a concrete codec module. The exceptions are the
# TIR coders, which re-implement each codec's bitstream in TVM and are tested bit for bit against it.
CONCRETE_CODECS = ("featcomp.codecs.dctcm", "featcomp.codecs.tvlc")
CODEC_IMPLEMENTATIONS = ("featcomp.codecs", "featcomp.runtime_ops.tvm.coder", "featcomp.runtime_ops.tvm.coder_kernels",
                         "featcomp.runtime_ops.tvm.dctcm_coder_kernels")
RUNTIMES = ("onnxruntime", "onnxruntime_extensions", "tvm", "tvm_ffi")


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module imported, or the module a name is imported from
    name: str | None  # the imported name when it is not a module (or the attribute read, for `m._x`)
    line: int
    module_level: bool
    type_only: bool


def modules(sources: dict[str, Path]) -> dict[str, Path]:
    """Module name -> file, for every .py under each source folder (nested source folders counted once)."""
    found: dict[str, Path] = {}
    for package, folder in sorted(sources.items(), key=lambda kv: -len(kv[0])):  # innermost first
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts or path in found.values():
                continue
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found.setdefault(name, path)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import in one file, resolved against the known modules, and every `m._x` read on an imported module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    bound: dict[str, str] = {}  # local name -> internal module it refers to

    def visit(node: ast.AST, module_level: bool, type_only: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, None, node.lineno, module_level, type_only)
                if alias.name in known:
                    bound[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    bound[alias.asname or alias.name] = sub
                    yield Import(module, sub, None, node.lineno, module_level, type_only)
                else:
                    yield Import(module, base, alias.name, node.lineno, module_level, type_only)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            yield Import(module, bound[node.value.id], node.attr, node.lineno, module_level, type_only)
        for field, child in ast.iter_fields(node):
            children = child if isinstance(child, list) else [child]
            for c in children:
                if not isinstance(c, ast.AST):
                    continue
                inner = module_level and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                typed = type_only or (isinstance(node, ast.If) and field == "body" and _is_type_checking(node.test))
                yield from visit(c, inner, typed)

    yield from visit(tree, True, False)


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def _internal(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def violations(sources: dict[str, Path], layers: list[tuple[str, tuple[str, ...]]], adapters: tuple[str, ...],
               runtimes: tuple[str, ...]) -> list[str]:
    """One line per broken rule: 'path:line: what'."""
    found = modules(sources)
    known = set(found)
    roots = tuple(sorted({name.split(".")[0] for name in sources}))
    problems = []
    for module, path in sorted(found.items()):
        own = layer_of(module, layers)
        if own is None:
            problems.append(f"{path}: {module} is in no layer (add it to LAYERS)")
            continue
        for imp in imports(module, path, known):
            here = f"{path}:{imp.line}"
            if _internal(imp.target, roots):
                other = layer_of(imp.target, layers)
                if not imp.type_only and other is not None and other > own:
                    problems.append(f"{here}: {module} ({layers[own][0]}) imports {imp.target} "
                                    f"({layers[other][0]}), a higher layer")
                private = imp.name is not None and imp.name.startswith("_") and not imp.name.startswith("__")
                if private and imp.target != module:
                    problems.append(f"{here}: {module} uses {imp.target}.{imp.name}, a private name of another module")
            elif imp.target.split(".")[0] in runtimes and imp.module_level and not imp.type_only \
                    and not _internal(module, adapters):
                problems.append(f"{here}: {module} imports {imp.target} at module level; only the runtime "
                                f"adapters ({', '.join(adapters)}) may")
    return list(dict.fromkeys(problems))  # one line per import statement, not per name


def test_the_package_keeps_its_layers() -> None:
    problems = violations(SOURCES, LAYERS, ADAPTERS, RUNTIMES)
    assert problems == [], "\n".join(problems)


def concrete_codec_imports(sources: dict[str, Path], concrete: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    """One line per import of a concrete codec module by a module that is not allowed one."""
    found = modules(sources)
    problems = []
    for module, path in sorted(found.items()):
        if _internal(module, allowed):
            continue
        for imp in imports(module, path, set(found)):
            if not imp.type_only and _internal(imp.target, concrete):
                problems.append(f"{path}:{imp.line}: {module} imports {imp.target}; use the codec protocol "
                                "(featcomp.codecs.base.SiteCodec) or the registry (featcomp.codecs)")
    return list(dict.fromkeys(problems))


def test_only_codecs_and_their_tir_coders_import_a_concrete_codec() -> None:
    problems = concrete_codec_imports(SOURCES, CONCRETE_CODECS, CODEC_IMPLEMENTATIONS)
    assert problems == [], "\n".join(problems)


def test_the_concrete_codec_rule_can_fail(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"low/codec.py": "X = 1\n", "high/c.py": "from pkg.low.codec import X\n",
                            "high/d.py": "from pkg.low import codec\n", "high/ok.py": "from pkg.low import b\n",
                            "low/b.py": ""})
    problems = concrete_codec_imports(tree, ("pkg.low.codec",), ("pkg.low",))
    assert len(problems) == 2 and all("imports pkg.low.codec" in p for p in problems), problems


def test_every_layer_holds_a_module() -> None:
    """A layer that matches nothing is a stale name (a module moved or was renamed)."""
    found = modules(SOURCES)
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            assert any(m == prefix or m.startswith(prefix + ".") for m in found), f"{name}: {prefix} matches no module"


# --- the checker fails when it should: synthetic trees ---------------------------------------------------------

TOY_LAYERS: list[tuple[str, tuple[str, ...]]] = [("low", ("pkg.low",)), ("high", ("pkg.high", "pkg"))]


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in {"__init__.py": "", "low/__init__.py": "", "high/__init__.py": "", **files}.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"pkg": tmp_path / "pkg"}


def _check(tmp_path: Path, files: dict[str, str]) -> list[str]:
    return violations(_tree(tmp_path, files), TOY_LAYERS, ("pkg.high.adapter",), ("onnxruntime", "tvm"))


def test_checker_accepts_downward_imports(tmp_path: Path) -> None:
    assert _check(tmp_path, {
        "low/a.py": "from pkg.low import b\nimport pkg.low.b\n",
        "low/b.py": "X = 1\n",
        "high/c.py": "from pkg.low.a import b\nfrom ..low import b as bb\nprint(bb.X)\n",
        "high/adapter.py": "import onnxruntime\nfrom tvm import relax\n",
        "high/lazy.py": "def f():\n    import onnxruntime\n",
    }) == []


@pytest.mark.parametrize("files, expected", [
    ({"low/a.py": "from pkg.high import c\n", "high/c.py": ""}, "pkg.low.a (low) imports pkg.high.c (high)"),
    ({"low/a.py": "from ..high.c import f\n", "high/c.py": "def f(): pass\n"}, "imports pkg.high.c (high)"),
    ({"low/a.py": "def f():\n    import pkg.high.c\n", "high/c.py": ""}, "imports pkg.high.c (high)"),
    ({"high/c.py": "from pkg.low.b import _helper\n", "low/b.py": "def _helper(): pass\n"},
     "uses pkg.low.b._helper, a private name"),
    ({"high/c.py": "from pkg.low import b\nb._helper()\n", "low/b.py": "def _helper(): pass\n"},
     "uses pkg.low.b._helper, a private name"),
    ({"high/c.py": "import onnxruntime\n"}, "imports onnxruntime at module level"),
    ({"low/a.py": "try:\n    from tvm import relax\nexcept ImportError:\n    pass\n"}, "imports tvm at module level"),
])
def test_checker_finds(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    problems = _check(tmp_path, files)
    assert any(expected in p for p in problems), problems


def test_checker_wants_every_module_in_a_layer(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"other/__init__.py": "", "other/d.py": ""})
    problems = violations(tree, [("low", ("pkg.low",)), ("high", ("pkg.high",))], (), ("tvm",))
    assert any("pkg.other.d is in no layer" in p for p in problems), problems


def test_checker_ignores_annotations_only_imports_and_own_private_names(tmp_path: Path) -> None:
    assert _check(tmp_path, {
        "low/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high.c import C\n"
                    "def _mine(): pass\n_mine()\n",
        "high/c.py": "class C: pass\n",
    }) == []
