"""The code deps of every dvc.yaml stage, derived from the imports, so that they cannot drift.

    python scripts/dvc_deps.py            # print each stage's derived code deps
    python scripts/dvc_deps.py --check    # exit 1 with a diff when dvc.yaml's code deps differ from them
    python scripts/dvc_deps.py --write    # rewrite the code deps in dvc.yaml, leaving everything else as it is

For each stage, the ``churn <command>`` its ``cmd`` runs is looked up in churn_pipeline/pipelines/cli.py: the
churn_pipeline modules that command's function imports (the stage module, sometimes pipelines.io too) are the
roots. The code deps are the transitive closure of the churn_pipeline modules the roots import, read with ``ast``
from the source (no import is executed): imports at module level and inside functions both count, since lazy
imports run too; imports under ``if TYPE_CHECKING:`` do not. A module a file names by path as code, such as
``Path(__file__).resolve().parents[1] / "models" / "serving.py"`` (the MLflow model's code, which runs when the
model is logged and loaded), counts as imported. A package's ``__init__.py`` is listed when it holds
more than a docstring (it runs before any module of the package). The CLI module itself is not listed: it parses
options and calls the stage, and listing it would rerun every stage on any edit of it.

Only the entries under churn_pipeline/ are derived: data deps (``${data.path}``, data/validated,
metrics/train.json, ...) and the comments above them stay where they are; the code deps follow them, sorted.
A comment directly above a code dep is dropped with it on --write. Exit codes: 0 up to date (or written),
1 differences (--check), 2 a stage whose command cannot be resolved.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import shlex
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "churn_pipeline"
CLI_MODULE = "churn_pipeline.pipelines.cli"
CODE_PREFIX = f"{PACKAGE}/"


class UnresolvedStageError(Exception):
    pass


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of a churn_pipeline module or package, or None when there is none."""
    base = root.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _absolute(module: str | None, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    parts = current.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, module] if module else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _code_path(node: ast.BinOp, path: Path, root: Path) -> str | None:
    """The module named by ``Path(__file__).resolve().parents[1] / "models" / "serving.py"``, else None."""
    parts: list[str] = []
    while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        if not (isinstance(node.right, ast.Constant) and isinstance(node.right.value, str)):
            return None
        parts.insert(0, node.right.value)
        node = node.left
    base = path
    steps: list[ast.AST] = []
    while not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Path"):
        steps.insert(0, node)
        if isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node = node.func
        else:
            return None
    if not (len(node.args) == 1 and isinstance(node.args[0], ast.Name) and node.args[0].id == "__file__"):
        return None
    for step in steps:
        if isinstance(step, ast.Attribute) and step.attr == "parent":
            base = base.parent
        elif isinstance(step, ast.Subscript) and isinstance(step.slice, ast.Constant):
            base = base.parents[step.slice.value]  # the step before it is the .parents attribute
        elif not (isinstance(step, ast.Attribute) and step.attr in ("parents", "resolve")) and not isinstance(
            step, ast.Call
        ):
            return None
    target = base.joinpath(*parts).resolve()
    if target.suffix != ".py" or not target.is_relative_to(root / PACKAGE):
        return None
    return ".".join(target.relative_to(root).with_suffix("").parts)


def _imports_in(
    nodes: list[ast.stmt] | ast.AST, current: str, is_package: bool, root: Path, path: Path | None = None
) -> set[str]:
    """churn_pipeline modules imported anywhere in ``nodes`` (functions included, TYPE_CHECKING blocks not), and
    the modules a file names as code by path (``Path(__file__)... / "serving.py"``: MLflow's model code)."""
    found: set[str] = set()
    stack: list[ast.AST] = list(nodes) if isinstance(nodes, list) else [nodes]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, current, is_package)
            found.add(base)
            for alias in node.names:
                if module_file(f"{base}.{alias.name}", root) is not None:
                    found.add(f"{base}.{alias.name}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
        elif isinstance(node, ast.BinOp) and path is not None:
            named = _code_path(node, path, root)
            if named is not None:
                found.add(named)
                continue
        stack.extend(ast.iter_child_nodes(node))
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _with_parents(names: set[str]) -> set[str]:
    out = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def closure(roots: set[str], root: Path = ROOT) -> set[str]:
    """Every churn_pipeline module (and package) that importing ``roots`` runs."""
    seen: set[str] = set()
    todo = sorted(_with_parents(roots))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name, root)
        if path is None:  # a name imported from a package, not a module: the package is already in
            continue
        seen.add(name)
        stat = path.stat()
        todo.extend(sorted(_module_imports(name, path, stat.st_mtime_ns, stat.st_size) - seen))
    return seen


@functools.cache
def _module_imports(name: str, path: Path, mtime_ns: int, size: int) -> set[str]:
    """The churn_pipeline modules (with their parent packages) one file imports; cached per file version."""
    tree = ast.parse(path.read_text(), filename=str(path))
    root = path.parents[len(name.split(".")) - (0 if path.name == "__init__.py" else 1)]
    return _with_parents(_imports_in(tree.body, name, path.name == "__init__.py", root, path))


def _only_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) for s in body)


def dep_paths(modules: set[str], root: Path = ROOT) -> list[str]:
    """The files of ``modules`` as dvc.yaml lists them (relative, sorted), docstring-only __init__.py left out."""
    paths = set()
    for name in modules:
        path = module_file(name, root)
        if path is None or (path.name == "__init__.py" and _only_docstring(path)):
            continue
        paths.add(path.relative_to(root).as_posix())
    return sorted(paths)


def cli_commands(root: Path = ROOT) -> dict[tuple[str, ...], set[str]]:
    """``churn`` command words (e.g. ("score",), ("import", "online-retail")) -> modules its function imports."""
    path = module_file(CLI_MODULE, root)
    assert path is not None, f"{CLI_MODULE} not found under {root}"
    tree = ast.parse(path.read_text())
    groups = {"app": ()}
    for node in tree.body:  # import_app = typer.Typer(...); app.add_typer(import_app, name="import")
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr == "add_typer"
        ):
            name = next(k.value.value for k in node.value.keywords if k.arg == "name")
            groups[node.value.args[0].id] = (name,)
    commands: dict[tuple[str, ...], set[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            if not (
                isinstance(dec, ast.Call)
                and isinstance(dec.func, ast.Attribute)
                and dec.func.attr == "command"
                and isinstance(dec.func.value, ast.Name)
                and dec.func.value.id in groups
            ):
                continue
            word = dec.args[0].value if dec.args else node.name.replace("_", "-")
            commands[(*groups[dec.func.value.id], word)] = _imports_in(node.body, CLI_MODULE, False, root)
    return commands


def stage_roots(cmd: str, commands: dict[tuple[str, ...], set[str]]) -> set[str]:
    """The modules the ``churn`` command of a stage's ``cmd`` dispatches to."""
    words = shlex.split(cmd)
    if "churn" not in words:
        raise UnresolvedStageError(f"not a `churn` command: {cmd!r}")
    args = [w for w in words[words.index("churn") + 1 :]]
    while args and args[0].startswith("-"):  # root options such as --traceback
        args.pop(0)
    for n in (2, 1):
        if tuple(args[:n]) in commands:
            return commands[tuple(args[:n])]
    raise UnresolvedStageError(f"no `churn {' '.join(args[:2])}` command in {CLI_MODULE}: {cmd!r}")


def derive(dvc_yaml: str, root: Path = ROOT) -> dict[str, list[str]]:
    """Stage name -> its derived code deps, in dvc.yaml's stage order."""
    stages = yaml.safe_load(dvc_yaml)["stages"]
    commands = cli_commands(root)
    return {name: dep_paths(closure(stage_roots(stage["cmd"], commands), root), root) for name, stage in stages.items()}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def rewrite(dvc_yaml: str, derived: dict[str, list[str]]) -> str:
    """dvc.yaml with each stage's code deps replaced by ``derived``; every other line unchanged."""
    lines = dvc_yaml.splitlines(keepends=True)
    out: list[str] = []
    i, stage, in_stages = 0, None, False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and _indent(line) == 0:
            in_stages = stripped == "stages:"
        elif in_stages and stripped.endswith(":") and not stripped.startswith("#") and _indent(line) == 2:
            stage = stripped[:-1]
        if not (in_stages and stage in derived and stripped == "deps:" and _indent(line) == 4):
            out.append(line)
            i += 1
            continue
        out.append(line)
        i += 1
        block: list[str] = []  # the entries (and their comments) of this deps list
        while i < len(lines) and (
            not lines[i].strip() or (_indent(lines[i]) >= 6 and lines[i].lstrip().startswith(("-", "#")))
        ):
            block.append(lines[i])
            i += 1
        trailing: list[str] = []
        while block and not block[-1].strip():
            trailing.insert(0, block.pop())
        kept: list[str] = []
        pending: list[str] = []  # comments waiting to see whether they sit above a data dep or a code dep
        item_indent = " " * 6
        for entry in block:
            text = entry.strip()
            if text.startswith("#") or not text:
                pending.append(entry)
                continue
            item_indent = entry[: _indent(entry)]
            value = text[1:].strip().strip("'\"")
            if not value.startswith(CODE_PREFIX):
                kept.extend(pending)
                kept.append(entry)
            pending = []
        kept.extend(pending)
        out.extend(kept)
        out.extend(f"{item_indent}- {path}\n" for path in derived[stage])
        out.extend(trailing)
    return "".join(out)


def current(dvc_yaml: str) -> dict[str, list[str]]:
    """Stage name -> the code deps dvc.yaml lists now."""
    stages = yaml.safe_load(dvc_yaml)["stages"]
    return {
        name: [d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith(CODE_PREFIX)]
        for name, stage in stages.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 with a diff when dvc.yaml is out of date")
    mode.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    parser.add_argument("--dvc-yaml", type=Path, default=ROOT / "dvc.yaml")
    args = parser.parse_args(argv)
    root = args.dvc_yaml.resolve().parent
    text = args.dvc_yaml.read_text()
    try:
        derived = derive(text, root)
    except UnresolvedStageError as err:
        print(f"dvc_deps: {err}", file=sys.stderr)
        return 2
    new = rewrite(text, derived)
    if args.write:
        if new != text:
            args.dvc_yaml.write_text(new)
            print(f"dvc_deps: rewrote the code deps in {args.dvc_yaml}")
        else:
            print(f"dvc_deps: {args.dvc_yaml} is up to date")
        return 0
    if args.check:
        if new == text:
            return 0
        diff = difflib.unified_diff(
            text.splitlines(keepends=True), new.splitlines(keepends=True), "dvc.yaml", "dvc.yaml (derived)"
        )
        sys.stdout.writelines(diff)
        print("dvc_deps: dvc.yaml's code deps differ from the imports; run `python scripts/dvc_deps.py --write`")
        return 1
    for stage, paths in derived.items():
        print(f"{stage}:")
        print("".join(f"  - {p}\n" for p in paths), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
