"""The documentation cannot drift from the code.

- docs/api.md against the app's /openapi.json: every operation is on the page and every
  operation the page names exists; each operation's field table lists exactly its request
  body's properties and query parameters.
- docs/configuration.md is what docs/gen_configuration.py writes from the settings model.
- Every relative link and #anchor in README.md, SECURITY.md and docs/*.md leads somewhere;
  every docs page is linked from the README; every `METHOD /path` any page names is a route;
  every AISTACK_ variable a page names is a setting or is read somewhere in the code.
- The README stays a front door: at most 250 lines, the two set-up commands first.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
API = DOCS / "api.md"
PAGES = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted(DOCS.glob("*.md"))]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
OPERATION = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]*)[^`]*`")
README_MAX_LINES = 250

# Routes the app serves outside /openapi.json (include_in_schema=False), and why they are left out of
# the schema. api.md lists them too ("Pages outside the schema"), but they are not checked against it.
NOT_IN_SCHEMA: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "the schema itself",
    ("GET", "/"): "a redirect to the dashboard page",
    ("GET", "/dashboard"): "the dashboard's HTML page",
    ("GET", "/dashboard/login"): "trades the admin token for the dashboard's cookie (a browser page)",
    ("GET", "/dashboard/session"): "the dashboard page's own helper",
    ("GET", "/docs"): "Swagger UI's HTML page",
    ("GET", "/docs/oauth2-redirect"): "Swagger UI's helper page",
    ("GET", "/redoc"): "ReDoc's HTML page",
}
# Static file folders mounted beside the pages.
MOUNTS: dict[str, str] = {
    "/dashboard/static": "the dashboard's scripts, styles and icons",
    "/docs/static": "Swagger UI's and ReDoc's scripts, served offline",
}


# The app ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real app, built in-process on an empty data dir (nothing is started: no models, no server)."""
    data = tmp_path_factory.mktemp("docs-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AISTACK_DATA_DIR", str(data))
        from models.core.settings import load_settings
        from server.app import create_app

        yield create_app(load_settings(data_dir=data))


@pytest.fixture(scope="module")
def openapi(app: Any) -> dict[str, Any]:
    spec: dict[str, Any] = app.openapi()
    return spec


def schema_operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): op for path, ops in spec["paths"].items() for method, op in ops.items()
            if method.upper() in METHODS}


def app_routes(app: Any) -> tuple[set[tuple[str, str, bool]], set[str]]:
    """(method, path, in schema) of every route, and every mount's path, through included routers."""
    routes: set[tuple[str, str, bool]] = set()
    mounts: set[str] = set()

    def walk(items: list[Any], prefix: str, in_schema: bool) -> None:
        for route in items:
            inner = getattr(route, "original_router", None)
            if inner is not None:  # FastAPI >= 0.120 keeps included routers whole
                context = route.include_context
                walk(inner.routes, prefix + context.prefix, in_schema and context.include_in_schema)
            elif hasattr(route, "methods") and route.methods:
                for method in route.methods - {"HEAD", "OPTIONS"}:
                    routes.add((method, prefix + route.path, in_schema and getattr(route, "include_in_schema", True)))
            elif hasattr(route, "app") and hasattr(route, "path"):
                mounts.add(prefix + route.path)

    walk(app.routes, "", True)
    return routes, mounts


def request_fields(spec: dict[str, Any], op: dict[str, Any]) -> set[str]:
    """The request body's top-level properties and the query parameters of one operation."""
    names = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
    for content in op.get("requestBody", {}).get("content", {}).values():
        schema = resolve(spec, content.get("schema", {}))
        names |= set(schema.get("properties", {}))
    return names


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        node: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return resolve(spec, node)
    return schema


# Markdown -------------------------------------------------------------------------------------------

def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(title: str) -> str:
    """GitHub's anchor for a heading."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def headings(text: str) -> list[tuple[int, int, str]]:
    """(line number, level, title) of every heading outside code."""
    found = []
    for number, line in prose_lines(text):
        match = re.match(r"(#{1,6}) +(.*?) *#*$", line)
        if match:
            found.append((number, len(match.group(1)), match.group(2)))
    return found


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for _, _, title in headings(text):
        base = slug(title)
        count = seen.get(base, 0)
        result.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return result


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line, target) of every markdown link and image outside code."""
    for number, line in prose_lines(text):
        line = re.sub(r"`[^`]*`", "", line)
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line):
            yield number, target


def prose(text: str) -> str:
    return "\n".join(line for _, line in prose_lines(text))


def sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading title, the lines up to the next heading of any level)."""
    result: list[tuple[str, list[str]]] = [("", [])]
    for _, line in prose_lines(text):
        match = re.match(r"#{1,6} +(.*)", line)
        if match:
            result.append((match.group(1), []))
        else:
            result[-1][1].append(line)
    return result


def table_fields(lines: list[str]) -> set[str]:
    """The names in the first column of every table whose header's first cell is `field`."""
    names: set[str] = set()
    in_table = False
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            in_table = False
            continue
        if cells[0] == "field":
            in_table = True
            continue
        if in_table and not set(cells[0]) <= set("-: "):
            names |= {name.split(".")[0] for name in re.findall(r"`([^`]+)`", cells[0])}
    return names


# docs/api.md against /openapi.json ------------------------------------------------------------------

def test_every_schema_operation_is_in_api_md_and_every_one_it_names_exists(openapi: dict[str, Any]) -> None:
    operations = schema_operations(openapi)
    named = {(m, p) for m, p in OPERATION.findall(prose(API.read_text(encoding="utf-8")))}
    missing = sorted(op for op in operations if op not in named)
    assert not missing, f"operations in /openapi.json that docs/api.md does not name (as `METHOD /path`): {missing}"
    unknown = sorted(op for op in named if op not in operations and op not in NOT_IN_SCHEMA)
    assert not unknown, f"docs/api.md names operations that /openapi.json does not have: {unknown}"


def test_each_operations_field_table_matches_its_request_schema(openapi: dict[str, Any]) -> None:
    operations = schema_operations(openapi)
    documented: set[tuple[str, str]] = set()
    problems = []
    for title, lines in sections(API.read_text(encoding="utf-8")):
        ops = [(m, p) for m, p in OPERATION.findall(title) if (m, p) in operations]
        table = table_fields(lines)
        if not ops:
            if table:
                problems.append(f"'{title}': a field table under a heading that names no operation")
            continue
        documented |= set(ops)
        expected = set().union(*(request_fields(openapi, operations[op]) for op in ops))
        if table - expected:
            problems.append(f"'{title}': fields in docs/api.md that the schema lacks: {sorted(table - expected)}")
        if expected - table:
            problems.append(f"'{title}': schema fields missing from its field table: {sorted(expected - table)}")
    for op, body in operations.items():
        if request_fields(openapi, body) and op not in documented:
            problems.append(f"{op} takes fields but no docs/api.md heading names it (its field table goes there)")
    assert not problems, "\n".join(problems)


def response_fields(spec: dict[str, Any], schema: dict[str, Any], defs: dict[str, Any] | None = None,
                    seen: frozenset[str] = frozenset()) -> set[str]:
    """Every property name, at any depth, of a success answer's schema."""
    ref = schema.get("$ref")
    if ref:
        if ref in seen:
            return set()
        target = (defs or {})[ref.split("/")[-1]] if ref.startswith("#/$defs/") else resolve(spec, {"$ref": ref})
        return response_fields(spec, target, defs, seen | {ref})
    defs = schema.get("$defs", defs)
    names: set[str] = set()
    parts = [*schema.get("anyOf", []), *schema.get("oneOf", []), *schema.get("allOf", [])]
    for part in [*parts, schema["items"]] if "items" in schema else parts:
        names |= response_fields(spec, part, defs, seen)
    for name, prop in schema.get("properties", {}).items():
        names |= {name} | response_fields(spec, prop, defs, seen)
    return names


def test_every_response_field_is_named_in_its_operations_section(openapi: dict[str, Any]) -> None:
    """Operations with the same answer (transcriptions and translations) may describe it once."""
    import json

    operations = schema_operations(openapi)
    text_of: dict[tuple[str, str], str] = {}
    for title, lines in sections(API.read_text(encoding="utf-8")):
        for op in OPERATION.findall(title):
            text_of[op] = text_of.get(op, "") + "\n".join(lines)
    def shape(node: Any) -> str:  # an answer's schema without its titles (FastAPI names them per route)
        if isinstance(node, dict):
            return "{" + ",".join(f"{k}:{shape(v)}" for k, v in sorted(node.items()) if k != "title") + "}"
        return "[" + ",".join(shape(v) for v in node) + "]" if isinstance(node, list) else json.dumps(node)

    answers = {op: next((r.get("content") or {} for code, r in body.get("responses", {}).items() if code in ("200", "202")), {})
               for op, body in operations.items()}
    problems = []
    for op, content in answers.items():
        same = [other for other, c in answers.items() if shape(c) == shape(content)]
        text = "\n".join(text_of.get(other, "") for other in same)
        names = set().union(*(response_fields(openapi, c.get("schema", {})) for c in content.values()))
        missing = sorted(n for n in names if not re.search(f"[`\"]{re.escape(n)}[`\"]", text))
        if missing:
            problems.append(f"{op}: answer fields docs/api.md does not name in its section: {missing}")
    assert not problems, "\n".join(problems)


def test_routes_outside_the_schema_are_listed_with_a_reason(app: Any) -> None:
    routes, mounts = app_routes(app)
    hidden = {(m, p) for m, p, in_schema in routes if not in_schema}
    assert hidden == set(NOT_IN_SCHEMA), (
        f"routes left out of /openapi.json: add them to NOT_IN_SCHEMA with a reason: {sorted(hidden - set(NOT_IN_SCHEMA))}; "
        f"gone: {sorted(set(NOT_IN_SCHEMA) - hidden)}"
    )
    assert mounts == set(MOUNTS), mounts
    text = API.read_text(encoding="utf-8")
    assert all(f"`{m} {p}`" in text for m, p in NOT_IN_SCHEMA), "docs/api.md lists the pages outside the schema"


def test_every_operation_any_page_names_is_a_route(app: Any) -> None:
    routes, _ = app_routes(app)

    def shape(path: str) -> str:
        return re.sub(r"(\{[^}]*\}|<[^>]*>)", "{}", path)

    known = {(m, shape(p)) for m, p, _ in routes}
    problems = [f"{page.relative_to(ROOT)}: `{m} {p}`" for page in PAGES
                for m, p in OPERATION.findall(prose(page.read_text(encoding="utf-8"))) if (m, shape(p)) not in known]
    assert not problems, f"pages name routes the app does not have: {problems}"


# docs/configuration.md against the settings ----------------------------------------------------------

def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_configuration", DOCS / "gen_configuration.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_md_is_generated_from_the_settings() -> None:
    expected = load_generator().render()
    current = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert current == expected, "docs/configuration.md is not current: run .venv/bin/python docs/gen_configuration.py"


def test_configuration_md_has_a_row_per_setting() -> None:
    from models.core.settings import Settings

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"| `AISTACK_{name.upper()}` |" not in text]
    assert not missing, missing


def test_every_aistack_variable_a_page_names_exists() -> None:
    from models.core.settings import Settings

    known = {f"AISTACK_{name.upper()}" for name in Settings.model_fields}
    for folder in ("app", "server", "models", "tests", "bench", "installer", ".github"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".sh", ".yml", ".nsi", ".md"} and "__pycache__" not in path.parts:
                known |= set(re.findall(r"AISTACK_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8", errors="replace")))
    for path in (ROOT / "Makefile", ROOT / "pyinstaller.spec"):
        known |= set(re.findall(r"AISTACK_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")))
    problems = []
    for page in PAGES:
        for name in set(re.findall(r"AISTACK_[A-Z0-9_]*", page.read_text(encoding="utf-8"))):
            prefix = name.endswith("_")  # AISTACK_OBS_* or the bare prefix
            if not (any(k.startswith(name) for k in known) if prefix else name in known):
                problems.append(f"{page.relative_to(ROOT)}: {name}")
    assert not problems, f"variables that are neither a setting nor read anywhere: {sorted(problems)}"


# Links, anchors and the README ------------------------------------------------------------------------

def test_relative_links_and_anchors_resolve() -> None:
    problems = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for line, target in links(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}:{line}: {target}"
            if not dest.exists():
                problems.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{where}: no heading with that anchor")
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    targets = {(ROOT / t.partition("#")[0]).resolve() for _, t in links((ROOT / "README.md").read_text(encoding="utf-8"))}
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in targets]
    assert not unlinked, f"docs pages the README's contents do not link: {unlinked}"


def test_readme_is_a_front_door() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines; move detail to docs/"
    first_block = re.search(r"```\w*\n(.*?)```", text, re.S)
    assert first_block, "README.md starts with the set-up commands in a code block"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make run", "make test"], commands
    assert "`.ci/run` runs `make test` and then `make test-windows`" in " ".join(text.split())
