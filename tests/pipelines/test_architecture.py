"""The checks that keep the layout honest (issue 17): the import contracts in pyproject.toml hold; dvc.yaml's code
deps are the modules each stage imports, and touching one makes DVC rerun exactly the stages listing it (so, with
the test before it, the stages that import it); docs/experiments.md is generated, its sections exist where the code
points, and no docstring carries a measured table.

A few seconds in all: `lint-imports` and scripts/dvc_deps.py read the source (nothing is imported), and the DVC
check runs `dvc status` three times in a copy of the pipeline's definition and code (no data, no run).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _load_dvc_deps():
    spec = importlib.util.spec_from_file_location("dvc_deps", ROOT / "scripts" / "dvc_deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dvc_deps = _load_dvc_deps()


def test_the_import_contracts_hold():
    run = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True
    )
    if run.returncode != 0:
        pytest.fail(f"lint-imports (the contracts in pyproject.toml):\n{run.stdout}\n{run.stderr}", pytrace=False)


def test_dvc_yaml_code_deps_are_the_modules_each_stage_imports():
    text = (ROOT / "dvc.yaml").read_text()
    derived = dvc_deps.derive(text)
    if dvc_deps.current(text) != derived:
        check = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "dvc_deps.py"), "--check"], cwd=ROOT, capture_output=True, text=True
        )
        pytest.fail(f"dvc.yaml is out of date; run `python scripts/dvc_deps.py --write`:\n{check.stdout[-6000:]}")


def test_the_derived_deps_follow_lazy_imports_and_the_model_code_named_by_path():
    derived = dvc_deps.derive((ROOT / "dvc.yaml").read_text())
    # score imports score_spark inside a function (only for --engine spark); train logs models/serving.py as the
    # MLflow model's code by its path, never importing it.
    assert "churn_pipeline/pipelines/score_spark.py" in derived["score"]
    assert "churn_pipeline/models/serving.py" in derived["train"]
    assert "churn_pipeline/features/validation.py" not in derived["export"]


def _md5_entry(repo: Path, path: str) -> dict:
    data = (repo / path).read_bytes()
    return {"path": path, "hash": "md5", "md5": hashlib.md5(data).hexdigest(), "size": len(data)}


def _changed_code_deps(repo: Path, env: dict) -> dict[str, set[str]]:
    """Stage -> the code deps `dvc status` reports changed (the missing data deps are left out)."""
    run = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=repo, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    changed: dict[str, set[str]] = {}
    for stage, entries in json.loads(run.stdout or "{}").items():
        for entry in entries:
            if isinstance(entry, dict) and "changed deps" in entry:
                code = {d for d in entry["changed deps"] if d.startswith("churn_pipeline/")}
                if code:
                    changed.setdefault(stage, set()).update(code)
    return changed


def test_touching_an_imported_module_makes_dvc_rerun_exactly_the_stages_that_import_it(tmp_path):
    # A copy of the pipeline's definition and code. Its dvc.lock records the code deps at their current hashes
    # (as after a `dvc repro` of this tree), so that the committed dvc.lock, which the lead regenerates after a
    # move, does not decide the outcome; data deps are absent and show as deleted, which the check ignores.
    repo = tmp_path / "project"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".dvc/config"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "churn_pipeline", repo / "churn_pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    text = (repo / "dvc.yaml").read_text()
    stages = yaml.safe_load(text)["stages"]
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    for name, stage in stages.items():
        code = [d for d in stage["deps"] if isinstance(d, str) and d.startswith("churn_pipeline/")]
        lock["stages"].setdefault(name, {"cmd": stage["cmd"]})["deps"] = [_md5_entry(repo, d) for d in code]
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)

    # Which stages list each module in dvc.yaml (that this is every stage importing it is the test above): a module
    # several stages use but not all, and one that a single stage uses.
    users: dict[str, set[str]] = {}
    for stage, paths in dvc_deps.current(text).items():
        for path in paths:
            users.setdefault(path, set()).add(stage)
    partial = sorted((p for p, s in users.items() if len(s) < len(stages)), key=lambda p: (-len(users[p]), p))
    single = sorted(p for p, s in users.items() if len(s) == 1)
    assert partial and single, users
    assert _changed_code_deps(repo, env) == {}, "the copy's dvc.lock should match its code"

    for module in (partial[0], single[0]):
        original = (repo / module).read_bytes()
        (repo / module).write_bytes(original + b"\n# touched by test_architecture\n")
        changed = _changed_code_deps(repo, env)
        (repo / module).write_bytes(original)
        rerun = {stage for stage, deps in changed.items() if module in deps}
        assert rerun == users[module], (
            f"{module}: dvc reruns {sorted(rerun)}, dvc.yaml lists it in {sorted(users[module])}"
        )
        assert all(deps == {module} for deps in changed.values()), changed


def _load_experiments():
    spec = importlib.util.spec_from_file_location("experiments", ROOT / "scripts" / "experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


experiments = _load_experiments()


def test_docs_experiments_md_is_generated_from_the_metrics_and_the_recorded_experiments():
    if (ROOT / "docs" / "experiments.md").read_text() != experiments.render():
        check = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "experiments.py"), "--check"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        pytest.fail(f"docs/experiments.md is out of date:\n{check.stdout[-6000:]}", pytrace=False)


def test_every_docs_experiments_link_in_the_code_names_a_section_that_exists():
    anchors = experiments.anchors((ROOT / "docs" / "experiments.md").read_text())
    links = {
        (path.relative_to(ROOT).as_posix(), anchor)
        for path in sorted((ROOT / "churn_pipeline").rglob("*.py"))
        for anchor in re.findall(r"docs/experiments\.md#([\w-]+)", path.read_text())
    }
    assert links, "no module points to docs/experiments.md"
    assert not {(p, a) for p, a in links if a not in anchors}, f"sections: {sorted(anchors)}"


def test_no_module_docstring_carries_a_measured_table():
    # Tables of measurements live in docs/experiments/*.md (rendered into docs/experiments.md), not in the code.
    rule = re.compile(r"^\s*(=+\s+)+=+\s*$|^\s*\|?\s*:?-{3,}:?\s*\|")
    found = []
    for path in sorted((ROOT / "churn_pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node, clean=False) or ""
                if any(rule.match(line) for line in doc.splitlines()):
                    found.append(f"{path.relative_to(ROOT)}:{getattr(node, 'name', '<module>')}")
    assert not found, found


def test_the_stage_independence_contract_lists_every_stage_of_the_pipelines_layers():
    contracts = {
        c["id"]: c for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    }
    stage_layer = next(layer for layer in contracts["pipelines-layers"]["layers"] if "score_spark" in layer)
    stages = {f"churn_pipeline.pipelines.{name.strip()}" for name in stage_layer.split(":")}
    assert set(contracts["stages"]["modules"]) == stages - {"churn_pipeline.pipelines.score_spark"}
