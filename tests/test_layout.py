"""The package layout rule: the library does the work, `cli/` modules are thin Hydra wrappers over
`pipelines/`, and nothing imports a CLI module (running one, `python -m miva_lightning.cli.x`, is fine)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from miva_lightning.config import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "miva_lightning"
CLI_DIR = PACKAGE / "cli"
SCANNED = sorted([*PACKAGE.rglob("*.py"), *(REPO_ROOT / "experiments").rglob("*.py")])


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative imports resolved; for
    `from package import name` both `package` and `package.name` (the name may be a submodule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path) if path.is_relative_to(PACKAGE) else ""
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)] if package else []
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def is_cli_module(name: str) -> bool:
    return name == "miva_lightning.cli" or name.startswith("miva_lightning.cli.")  # not miva_lightning.cli_errors


def test_the_scan_sees_the_package_and_experiments():
    names = {p.relative_to(REPO_ROOT).as_posix() for p in SCANNED}
    assert "src/miva_lightning/cli/train.py" in names and "src/miva_lightning/pipelines/train.py" in names
    assert any(n.startswith("experiments/") for n in names)
    assert is_cli_module("miva_lightning.cli.demo") and not is_cli_module("miva_lightning.cli_errors")


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_nothing_imports_a_cli_module(path):
    offending = [f"line {line}: {name}" for line, name in imported_modules(path) if is_cli_module(name)]
    assert not offending, f"{path.relative_to(REPO_ROOT)} imports a CLI module ({offending}); import from miva_lightning.pipelines"


@pytest.mark.parametrize("path", sorted(CLI_DIR.glob("*.py")), ids=lambda p: p.name)
def test_cli_modules_are_thin_entry_points(path):
    """A CLI module defines its entry functions only; what they run lives in miva_lightning.pipelines."""
    tree = ast.parse(path.read_text())
    functions = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert set(functions) <= {"_hydra_main", "main"}, f"{path.name} defines {functions}; move the work to pipelines/"
    assert len(path.read_text().splitlines()) <= 60


@pytest.mark.parametrize("path", sorted((PACKAGE / "pipelines").glob("*.py")), ids=lambda p: p.name)
def test_pipelines_import_heavy_libraries_only_where_used(path):
    """Bad input is reported before torch loads: no module-level torch / lightning / diffusers imports."""
    tree = ast.parse(path.read_text())
    heavy = ("torch", "lightning", "diffusers", "transformers")
    top = []
    for node in tree.body:  # `if TYPE_CHECKING:` blocks are ast.If, not imports: skipped
        if isinstance(node, ast.Import):
            top += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            top.append(node.module or "")
    assert not [m for m in top if m.split(".")[0] in heavy], f"{path.name} imports {top} at module level"
