"""The house's one rule, checked on the code: imports point down the layers of docs/architecture.md, never up
(function-local imports included). A module may import its own layer or any below it."""

import ast
from pathlib import Path

import towerlab

# lowest first; a name is a module or a package (everything under it)
LAYERS = (
    (
        "primitives",
        (
            "errors",
            "files",
            "imagefile",
            "secrets",
            "lifetime",
            "decide",
            "dist",
            "perf",
            "precision",
            "progress",
            "plots",
            "optim",
            "metrics",
            "provenance",
            "tracking",
            "preempt",
            "pipeline",
            "watch",
            "config",
        ),
    ),
    ("formats", ("data", "chem", "checkpoint")),
    ("recipes", ("strategy", "recipes")),
    ("training", ("runs", "engine", "infer")),
    ("runs at work", ("train", "trial", "executor", "export", "registry")),
    ("what uses runs", ("jobs", "search", "generate", "report", "serve")),
    ("command line", ("board", "cli", "__main__")),
)
SRC = Path(towerlab.__file__).parent


def _layer(module: str) -> int:
    name = module.removeprefix("towerlab.").split(".")[0]
    for i, (_, names) in enumerate(LAYERS):
        if name in names:
            return i
    raise AssertionError(f"towerlab.{name} is in no layer: add it to LAYERS and to docs/architecture.md")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("towerlab"):
            # `from towerlab import x`: a module x, or a name of the package itself (which any layer may use)
            names = (
                [
                    f"towerlab.{a.name}"
                    for a in node.names
                    if (SRC / a.name).is_dir() or (SRC / f"{a.name}.py").is_file()
                ]
                if node.module == "towerlab"
                else [node.module]
            )
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("towerlab"))
    return found


def test_no_module_imports_one_above_it():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(("towerlab", *path.relative_to(SRC).with_suffix("").parts))
        if module == "towerlab.__init__":
            continue
        mine = _layer(module)
        upward += [
            f"{module} ({LAYERS[mine][0]}) imports {dep} ({LAYERS[_layer(dep)][0]})"
            for dep in sorted(_imports(path))
            if dep != "towerlab" and _layer(dep) > mine
        ]
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from towerlab.cli import main\n")
    assert _imports(bad) == {"towerlab.cli"} and _layer("towerlab.cli") > _layer("towerlab.engine")


def _runs_at_import(tree: ast.Module):
    """The statements a module runs as it is imported: its top level and its class bodies, not its functions."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.ClassDef):
            todo.extend(node.body)
            continue
        yield node


def test_no_module_reads_the_environment_as_it_is_imported():
    # a module that did would hold its importer's environment, not the command's: the tests' warm interpreter
    # (tests/helpers.run_cli) imports towerlab once and forks every command from it; a long-lived process that
    # imports towerlab, then changes os.environ, would meet the same stale value
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for stmt in _runs_at_import(ast.parse(path.read_text())):
            for node in ast.walk(stmt):
                name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
                if name in ("environ", "getenv"):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert found == [], f"read at import: {found}"


def test_the_capability_tables_name_exactly_the_capabilities_of_the_contract():
    """docs/architecture.md's table and contract.py's docstring list what CAPABILITIES holds, no more, no less
    (a capability added without its line, or a line left after one is gone, fails here)."""
    import re

    from towerlab.recipes import contract

    declared = set(contract.CAPABILITIES)
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    table = doc[doc.index("| capability | protocol |") :]
    table = table[: table.index("\n\n")]
    in_doc = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    head = contract.__doc__[contract.__doc__.index("capability      protocol") :]
    in_docstring = set(re.findall(r"^    ([a-z_]+) +[A-Z][A-Za-z]+ ", head.split("\n\n")[0], re.M))
    assert in_doc == declared, (sorted(declared - in_doc), sorted(in_doc - declared))
    assert in_docstring == declared, (sorted(declared - in_docstring), sorted(in_docstring - declared))
    for name, (protocol, _) in contract.CAPABILITIES.items():
        assert f"| `{name}` | `{protocol.__name__}`" in table, name
