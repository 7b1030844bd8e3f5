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
