"""The package's architecture, checked: which layer may import which, no import cycles,
and no torch where decoding runs.

Every import counts, also those inside functions (lazy imports still point an arrow).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gscodec"

# layer -> the gscodec layers it may import (leaves: errors, splats, metrics); top-level modules may import anything
ALLOWED = {
    "errors": set(),
    "splats": {"errors"},
    "metrics": {"errors"},
    "format": {"errors", "splats"},
    "quant": {"format", "errors", "splats"},
    "render": {"format", "errors", "splats"},
    "predictor": {"render", "quant", "format", "errors", "splats"},
    "encoder": {"predictor", "quant", "render", "format", "metrics", "errors", "splats"},
    "inpainting": {"predictor", "render", "quant", "format", "errors", "splats"},
    "embedding": {"predictor", "render", "quant", "format", "errors", "splats"},
}
# third-party packages a layer must never import
# (splats imports torch only inside `Splats.tensors`; the subprocess tests below check run time).
# format may use numba: its range decoder is SPEC 5 compiled (`format.entropy`), and numba is
# what every CPU decode renders with anyway.
FORBIDDEN = {"format": {"torch", "PIL"}, "quant": {"torch", "numba"}, "errors": {"numpy", "torch"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from . import x" may name a submodule
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        edges[name] = {m for m in imports_of(path) if m in modules and m != name}
    return edges


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "top"


def test_layers_import_only_downwards() -> None:
    edges = graph()
    bad = []
    for src, targets in edges.items():
        src_layer = layer(src)
        if src_layer not in ALLOWED:
            continue
        for dst in targets:
            dst_layer = layer(dst)
            if dst_layer != src_layer and dst_layer not in ALLOWED[src_layer] and dst != "gscodec":
                bad.append(f"{src} -> {dst}")
            if dst == "gscodec":
                bad.append(f"{src} -> gscodec (the top package)")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_forbidden_third_party_imports() -> None:
    bad = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        for mod in imports_of(path):
            if mod.split(".")[0] in FORBIDDEN.get(layer(name), set()):
                bad.append(f"{name} imports {mod}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    edges = graph()
    # parents are imported with their children: a package and its modules form no cycle by that alone
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_training_code_is_not_installed() -> None:
    assert not (PACKAGE / "training").exists()


@pytest.mark.parametrize("code", [
    "import gscodec",
    "import gscodec, numpy as np; gscodec.decode(gscodec.encode_splats(gscodec.Splats(4, 3, np.zeros((1, 2)), "
    "np.ones((1, 2)), np.zeros(1), np.ones((1, 3)))))",
    "import gscodec.GscImagePlugin, gscodec.cli; gscodec.cli._build_parser()",
])
def test_decoding_does_not_import_torch(code: str) -> None:
    out = subprocess.run([sys.executable, "-c", code + "; import sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_public_functions_are_not_shadowed_by_subpackages() -> None:
    """``gscodec.encode`` / ``gscodec.render_image`` stay functions whatever has been imported
    (a subpackage named like a public function would replace it as an attribute)."""
    code = ("import importlib, pkgutil, gscodec\n"
            "for m in pkgutil.walk_packages(gscodec.__path__, 'gscodec.'):\n"
            "    if 'GscImagePlugin' not in m.name and '__main__' not in m.name: importlib.import_module(m.name)\n"
            "print(all(callable(getattr(gscodec, n)) and not hasattr(getattr(gscodec, n), '__path__')\n"
            "          for n in ('encode', 'decode', 'render_image', 'read', 'write', 'check', 'convert', 'inpaint')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stderr
