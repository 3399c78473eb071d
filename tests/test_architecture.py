"""The layering of engage (README "Architecture"), checked on the source.

web -> domain -> rules and models; jobs -> domain. Imports inside functions count too: an
import hidden in a function still ties two modules together.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "engage"

#: Modules that need no app at all: plain values in, plain values out.
RULES = {
    "engage.access",
    "engage.best_time",
    "engage.content",
    "engage.follow",
    "engage.geonames",
    "engage.local_time",
    "engage.machine",
    "engage.mapping",
    "engage.records",
    "engage.storage",
    "engage.templating",
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """Every ``(imported module, names)`` of ``module``, anywhere in its source."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found.append((target, [alias.name for alias in node.names]))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names in _imports(name, path):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                while candidate and candidate not in modules:
                    candidate = candidate.rpartition(".")[0]
                # A child importing its own package's __init__ is not an edge of design.
                if candidate and candidate != name and not name.startswith(candidate + "."):
                    graph[name].add(candidate)
    return graph


def test_no_engage_module_takes_part_in_an_import_cycle():
    graph = _graph()
    cycles = []
    for start in graph:
        # Depth-first search for a path that comes back to ``start``.
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert cycles == []


def test_only_the_web_layer_sees_the_request_the_blueprint_and_render_template():
    outside = []
    for name, path in _modules().items():
        if name.startswith(("engage.web", "engage.demo")):
            continue
        for target, names in _imports(name, path):
            if target == "flask" and {"request", "render_template"} & set(names):
                outside.append(
                    f"{name}: flask.{sorted(set(names) & {'request', 'render_template'})}"
                )
            if target.startswith("engage.web") and name != "engage.extension":
                outside.append(f"{name}: {target}")
    assert outside == []


def test_the_rules_need_no_app():
    graph = _graph()
    for name in RULES:
        for target, _names in _imports(name, _modules()[name]):
            assert not target.startswith(("flask", "flask_sqlalchemy", "rq", "redis")), (
                f"{name} imports {target}"
            )
        assert graph[name] <= RULES | {"engage.i18n"}, f"{name} builds on {graph[name] - RULES}"


def test_below_the_jobs_nothing_imports_them():
    graph = _graph()
    users = sorted(m for m, targets in graph.items() if "engage.jobs" in targets)
    assert users == ["engage.cron"]


def test_importing_the_models_loads_no_web_module_and_every_table():
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, engage.models as m; "
            "print(sorted(k for k in sys.modules if k.startswith('engage.web'))); "
            "print(sorted(m.metadata.tables))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    web, tables = probe.stdout.splitlines()
    assert web == "[]"
    for table in ("engage_email", "engage_party", "engage_card", "engage_reminder"):
        assert f"'{table}'" in tables


def test_every_job_has_its_limits_and_every_limit_its_job():
    from engage import jobs, queueing

    entry_points = {
        name
        for name, fn in inspect.getmembers(jobs, inspect.isfunction)
        if fn.__module__ == "engage.jobs"
    }
    assert entry_points == set(queueing.JOBS)
    for spec in queueing.JOBS.values():
        assert spec.path == f"engage.jobs.{spec.name}"
        assert spec.timeout > 0


@pytest.mark.parametrize("module", sorted(RULES))
def test_a_rule_module_imports_in_a_bare_interpreter(module):
    # No app, no request, no database: importing alone must work and pull in no web module.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, {module}; print(any(k.startswith('engage.web') for k in sys.modules))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert probe.stdout.strip() == "False"
