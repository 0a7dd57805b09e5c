"""The package's layers, read from its imports: no module imports one from a layer above its
own (README, 'Layout'). A new import that breaks the layering fails here, naming the module,
the line and the two layers."""

import ast
import pathlib

import pytest

#: The repository's package source (not an installed copy, which has no README beside it).
REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lpw_mp"

#: From the bottom up. A module may import its own layer and those below it.
LAYERS = ["units", "results", "kernel", "harness", "commands", "entry"]


def layer_of(module: str) -> str:
    """``lpw_mp.kernel.cpu`` -> ``kernel``; the package's own ``__init__`` is its base."""
    parts = module.split(".")
    if parts == ["lpw_mp", "__main__"]:
        return "entry"
    if len(parts) == 1 or parts[1] in ("__init__", "units"):
        return "units"
    return parts[1]


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def lpw_imports(path: pathlib.Path):
    """``(line, imported module)`` for every import of lpw_mp in the file, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else \
        module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from lpw_mp import units" imports the module named; otherwise the base says it.
            names = [f"{base}.{alias.name}" for alias in node.names] if base == "lpw_mp" \
                else [base]
        else:
            continue
        for name in names:
            if name == "lpw_mp" or name.startswith("lpw_mp."):
                yield node.lineno, name


def violations() -> list:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mine = layer_of(module_name(path))
        for line, imported in lpw_imports(path):
            theirs = layer_of(imported)
            if theirs in LAYERS and LAYERS.index(theirs) > LAYERS.index(mine):
                out.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({mine}) imports "
                           f"{imported} ({theirs})")
    return out


def test_every_module_belongs_to_a_layer():
    """Every module of the package sits in one of the layers the README names."""
    stray = [module_name(p) for p in PACKAGE.rglob("*.py")
             if layer_of(module_name(p)) not in LAYERS]
    assert stray == []


def test_no_module_imports_a_layer_above_its_own():
    """The kernel imports nothing above it, results read only data (no kernel, harness or
    command), the harness imports no command."""
    assert violations() == []


@pytest.mark.parametrize("source,offending", [
    ("from lpw_mp.commands.cli import main\n", "lpw_mp.commands.cli"),
    ("import lpw_mp.harness.emulator\n", "lpw_mp.harness.emulator"),
    ("def f():\n    from lpw_mp.kernel import cpu\n", "lpw_mp.kernel"),
])
def test_the_check_sees_an_upward_import(tmp_path, monkeypatch, source, offending):
    """The check itself: an upward import from the results layer, at module level or inside
    a function, is reported with its line."""
    fake = tmp_path / "lpw_mp"
    (fake / "results").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "results" / "__init__.py").write_text("")
    (fake / "results" / "bad.py").write_text(source)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    found = violations()
    assert len(found) == 1 and offending in found[0] and found[0].startswith(
        "lpw_mp/results/bad.py:"), found


def readme_modules() -> set:
    """The module paths the README's Layout table names (relative to the package)."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {cell.strip().strip("*").strip("`") for cell in rows}


def test_the_readmes_module_map_matches_the_tree():
    """Every module of the package has a row in the README's Layout table (a package may
    stand for its modules, as kernel/strategies/ does), and every row names a module that
    exists."""
    listed = readme_modules()
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    packages = {entry for entry in listed if entry.endswith("/")}
    unlisted = {m for m in modules
                if m not in listed and not any(m.startswith(p) for p in packages)}
    assert unlisted == set()
    gone = {entry for entry in listed if not (PACKAGE / entry).exists()}
    assert gone == set()
