"""Import layering of the model code: ``nn`` is the bottom layer (it imports no tower or paper module), the papers'
modules build on ``nn`` and never on the vision tower, and the attention entry point / splash kernel import runs
one way only (``nn.attention`` → ``nn.splash``)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "vlm_jax"


def _imports(path: pathlib.Path) -> set[str]:
    """Modules imported by a file (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def _files(subpackage: str) -> list[pathlib.Path]:
    return sorted((PACKAGE / subpackage).rglob("*.py"))


@pytest.mark.parametrize("subpackage, forbidden", [
    ("nn", ("vlm_jax.vision", "vlm_jax.lm", "vlm_jax.hires", "vlm_jax.model", "vlm_jax.projectors")),
    ("hires", ("vlm_jax.vision", "vlm_jax.lm", "vlm_jax.model")),
])
def test_subpackage_does_not_import(subpackage, forbidden):
    bad = {str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if m.startswith(forbidden))
           for path in _files(subpackage)}
    assert {k: v for k, v in bad.items() if v} == {}


def test_splash_does_not_import_the_attention_entry_point():
    assert "vlm_jax.nn.attention" not in _imports(PACKAGE / "nn" / "splash.py")
    assert "vlm_jax.nn.splash" in _imports(PACKAGE / "nn" / "attention.py")


def _subpackage_edges() -> set[tuple[str, str]]:
    """``(a, b)`` when a module of top-level part ``a`` of vlm_jax imports part ``b`` (a part is a subpackage or
    a top-level module, e.g. ``train``, ``model``)."""
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        part = rel[0] if len(rel) > 1 else path.stem
        for module in _imports(path):
            names = module.split(".")
            if names[0] == "vlm_jax" and len(names) > 1 and names[1] != part and names[1] != "__init__":
                edges.add((part, names[1]))
    return edges


def test_no_two_parts_of_the_package_import_each_other():
    edges = _subpackage_edges()
    assert sorted((a, b) for a, b in edges if (b, a) in edges and a < b) == []


@pytest.mark.parametrize("module", ["vlm_jax.data.pipeline", "vlm_jax.data.processor", "vlm_jax.stages",
                                    "vlm_jax.run_config.build_data", "vlm_jax.tiling.registry"])
def test_host_code_imports_no_model(module):
    """Host code (Grain workers, config loading) never loads the model or flax.nnx (issue 9, item 3)."""
    import subprocess
    import sys
    check = (f"import sys, {module}; bad = [m for m in ('vlm_jax.model', 'flax.nnx') if m in sys.modules]; "
             f"assert not bad, bad")
    subprocess.run([sys.executable, "-c", check], check=True, cwd=PACKAGE.parent)
