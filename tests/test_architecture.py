"""Import-direction rules (style.md): one-way arrows, checked by walking every module's AST."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cisora_mesh", "mcp_proxy", "capability", "memory_guard", "vault")

# package -> packages it must never import
FORBIDDEN = {
    "capability": {"cisora_mesh", "mcp_proxy", "memory_guard", "vault"},
    "vault": {"cisora_mesh", "mcp_proxy", "memory_guard", "capability"},
    "cisora_mesh": {"mcp_proxy", "memory_guard"},
}
# cisora_mesh may use capability/vault only through adapters (and the CLI, which is a composition root).
ADAPTER_DIRS = ("cisora_mesh/auth/", "cisora_mesh/cli/")


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependency_direction(package: str) -> None:
    violations = []
    for path in modules(package):
        rel = path.relative_to(ROOT).as_posix()
        forbidden = set(FORBIDDEN[package])
        if package == "cisora_mesh" and not rel.startswith(ADAPTER_DIRS):
            forbidden |= {"capability", "vault"}
        bad = imported_packages(path) & forbidden
        if bad:
            violations.append(f"{rel} imports {sorted(bad)}")
    assert violations == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()
    assert (ROOT / package / "__init__.py").is_file()


def test_cli_start_and_inline_path_do_not_import_heavy_dependencies() -> None:
    code = (
        "import sys\n"
        "from cisora_mesh.cli import build_parser\n"
        "build_parser()\n"
        "from cisora_mesh import ContentKind, ContentScan, Mesh\n"
        "Mesh().evaluate(ContentScan(kind=ContentKind.PROMPT, text='ignore previous instructions'))\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'tantivy', 'transformers', 'mcp', 'numpy')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""
