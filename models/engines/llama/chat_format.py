"""Chat prompts and structured output for llama.cpp models: templates, tools, JSON grammars.

Runs inside the llama.cpp runner. The prompt comes from the model's own Jinja
chat template (GGUF `tokenizer.chat_template`, or a catalog override), rendered
the way Hugging Face renders it. Tool use follows one format for every model,
the Hermes one (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`):
aistack describes the tools in the system message, so models whose template
knows nothing of tools can still call them, and a grammar makes the call valid
JSON against the tool's schema. JSON output (`response_format`) is a grammar too.

`llama_cpp` is imported inside functions: this module is engine-side only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.core.errors import Malformed

PROVIDER = "llama.cpp"
TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
# Grammar root used when a tool call wraps a schema grammar (whose own root is "root").
_CALL_ROOT = "aistack-tool-call"
# A lazy grammar wakes up when the output so far matches this (the call starts at the group).
TOOL_TRIGGER = r"[\s\S]*?(<tool_call>)[\s\S]*"

# Used when a GGUF carries no chat template: ChatML is what most small instruct models speak.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The schema converter's string rule lets raw control characters into strings, which strict
# JSON parsers (Python's json, JavaScript's JSON.parse) refuse; llama.cpp's own converter excludes them.
_LOOSE_CHAR = r'char ::= [^"\\] |'
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


@dataclass
class Grammar:
    """A GBNF grammar for the sampler; `lazy` ones only apply once `TOOL_TRIGGER` matches."""

    text: str
    root: str = "root"
    lazy: bool = False
    reserve: int = 0  # tokens to keep for writing the keys a schema requires when max_tokens nears


@dataclass
class ChatPlan:
    """What the engine needs to run one chat request: the prompt and how to read the output."""

    prompt: str
    grammar: Grammar | None = None
    tool_mode: str = "none"  # none | auto (model may call) | forced (model must call)
    tool_names: list[str] = field(default_factory=list)


class ChatTemplate:
    """The model's chat template, with a fallback for templates that refuse some roles."""

    def __init__(self, template: str, *, bos_token: str, eos_token: str, source: str):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.source = source  # "gguf", "catalog" or "chatml" (no template in the file)
        self._formatter: Any = Jinja2ChatFormatter(template, eos_token=eos_token, bos_token=bos_token)

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The prompt for `messages`, ending where the assistant's answer begins.

        Templates differ in the roles they accept (Gemma refuses `system`, many
        know no `tool` role). If the template refuses the conversation as it is,
        try again with system text folded into the first user turn, tool results
        as user turns, and same-role turns merged; if it still refuses, the
        template's own reason goes back to the client.
        """
        try:
            return self._render(messages)
        except Exception:  # noqa: BLE001 - any template failure gets one retry in the plainest shape
            pass
        try:
            return self._render(_plain_conversation(messages))
        except Exception as exc:  # noqa: BLE001 - template errors are the client's to fix
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise Malformed(
                f"This model's chat template cannot format these messages ({reason}). Check the order and roles of 'messages'.",
                provider=PROVIDER,
            ) from None

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return str(self._formatter(messages=messages).prompt)


def plan_chat(template: ChatTemplate, job: Mapping[str, Any]) -> ChatPlan:
    """Turn a chat job into a prompt plus the grammar that shapes the answer."""
    tools: list[dict[str, Any]] = job.get("tools") or []
    choice = job.get("tool_choice") or ("auto" if tools else "none")
    messages = [_as_text_message(m) for m in job["messages"]]
    response_format = job.get("response_format") or {"type": "text"}
    mode = "none" if not tools or choice == "none" else ("auto" if choice == "auto" else "forced")
    forced_name = choice.get("name") if isinstance(choice, dict) else None
    if mode != "none":
        offered = [t for t in tools if forced_name in (None, t["name"])]
        messages = _with_system_note(messages, tool_instructions(tools, forced_name, required=mode == "forced"))
        grammar: Grammar | None = tool_call_grammar(offered, lazy=mode == "auto")
        if mode == "auto" and response_format["type"] != "text":
            mode, grammar = "none", response_format_grammar(response_format)  # JSON wins over optional calls
        return ChatPlan(template.render(messages), grammar, mode, [t["name"] for t in offered])
    if response_format["type"] == "json_schema" and response_format.get("schema") is not None:
        note = "Answer with JSON that follows this schema:\n" + json.dumps(response_format["schema"], ensure_ascii=False)
        messages = _with_system_note(messages, note)
    return ChatPlan(template.render(messages), response_format_grammar(response_format))


# Messages ------------------------------------------------------------------------------
def _as_text_message(message: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI message as the plain {role, content} pair every template understands."""
    role = message["role"]
    content = message.get("content") or ""
    if role == "assistant" and message.get("tool_calls"):
        calls = [format_tool_call(c["name"], c.get("arguments") or "{}") for c in message["tool_calls"]]
        content = "\n".join(([content] if content else []) + calls)
    return {"role": "system" if role == "developer" else role, "content": content}


def _plain_conversation(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only user and assistant turns, alternating: the shape the strictest templates accept."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    plain: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "system":
            continue
        role = "assistant" if message["role"] == "assistant" else "user"
        content = message["content"]
        if message["role"] == "tool":
            content = f"Tool result:\n{content}"
        if plain and plain[-1]["role"] == role:
            plain[-1]["content"] += "\n\n" + content
        else:
            plain.append({"role": role, "content": content})
    if system:
        if plain and plain[0]["role"] == "user":
            plain[0]["content"] = system + "\n\n" + plain[0]["content"]
        else:
            plain.insert(0, {"role": "user", "content": system})
    return plain


def _with_system_note(messages: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    if messages and messages[0]["role"] == "system":
        first = messages[0]
        return [{**first, "content": f"{first['content']}\n\n{note}" if first["content"] else note}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


# Tools ---------------------------------------------------------------------------------
def format_tool_call(name: str, arguments: str) -> str:
    """How a call looks in the conversation (and how the model is asked to write one)."""
    try:
        args = json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        args = json.dumps(arguments, ensure_ascii=False)  # the client sent broken JSON: keep it visible
    return f'{TOOL_OPEN}{{"name": {json.dumps(name)}, "arguments": {args}}}{TOOL_CLOSE}'


def tool_instructions(tools: list[dict[str, Any]], forced: str | None, *, required: bool) -> str:
    listing = "\n".join(
        json.dumps(
            {"name": t["name"], "description": t.get("description") or "", "parameters": _parameters(t)},
            ensure_ascii=False,
        )
        for t in tools
    )
    text = (
        "You can call these functions. Each is described by a JSON schema:\n"
        f"<tools>\n{listing}\n</tools>\n"
        "To call a function, answer with only:\n"
        f'{TOOL_OPEN}{{"name": "<function name>", "arguments": <arguments as a JSON object>}}{TOOL_CLOSE}'
    )
    if forced:
        text += f"\nCall the function {forced} now."
    elif required:
        text += "\nCall one of these functions now."
    return text


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    params = tool.get("parameters")
    return params if isinstance(params, dict) and params else {"type": "object", "properties": {}}


def tool_call_grammar(tools: list[dict[str, Any]], *, lazy: bool) -> Grammar:
    """`<tool_call>{"name": one of the tools, "arguments": valid against that tool's schema}</tool_call>`."""
    shapes = [
        {
            "type": "object",
            "properties": {"name": {"const": t["name"]}, "arguments": _parameters(t)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    schema = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
    body = schema_grammar(schema, what="the 'parameters' schema of a tool in 'tools'")
    text = f'{body}\n{_CALL_ROOT} ::= "{TOOL_OPEN}" root "{TOOL_CLOSE}"\n'
    return Grammar(text, root=_CALL_ROOT, lazy=lazy, reserve=_key_reserve(schema))


def parse_tool_calls(text: str, names: list[str]) -> tuple[str | None, list[dict[str, str]]]:
    """Split model output into (content before the first call, calls to known tools)."""
    start = text.find(TOOL_OPEN)
    if start < 0:
        return text, []
    content = text[:start].strip() or None
    decoder = json.JSONDecoder()
    calls: list[dict[str, str]] = []
    for match in re.finditer(re.escape(TOOL_OPEN), text):
        body = text[match.end() :].lstrip()
        try:
            obj, _ = decoder.raw_decode(body)
        except ValueError:
            continue
        if not isinstance(obj, dict) or obj.get("name") not in names:
            continue
        args = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                pass
        calls.append({"name": str(obj["name"]), "arguments": json.dumps(args, ensure_ascii=False)})
    return content, calls


# JSON output ---------------------------------------------------------------------------
def response_format_grammar(response_format: dict[str, Any]) -> Grammar | None:
    kind = response_format.get("type", "text")
    if kind == "text":
        return None
    schema = response_format.get("schema")
    if kind == "json_schema" and schema is not None:
        return Grammar(schema_grammar(schema, what="'response_format.json_schema.schema'"), reserve=_key_reserve(schema))
    from llama_cpp.llama_grammar import JSON_GBNF

    return Grammar(JSON_GBNF)


def schema_grammar(schema: dict[str, Any], *, what: str) -> str:
    """GBNF accepting exactly the JSON documents valid against `schema` (llama.cpp's converter)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        text = json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # noqa: BLE001 - the converter raises bare exceptions for schemas it can't do
        reason = str(exc).strip()[:200] or type(exc).__name__
        raise Malformed(
            f"{what[0].upper()}{what[1:]} cannot be turned into a grammar ({reason}). "
            "Simplify the schema (plain objects, arrays, strings, numbers, enums work).",
            provider=PROVIDER,
        ) from None
    return text.replace(_LOOSE_CHAR, _STRICT_CHAR)


def _key_reserve(schema: Any, *, per_key: int = 3, cap: int = 256) -> int:
    """Tokens to write every key the schema requires (an upper bound: alternatives all count)."""
    count = 0
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            required = node.get("required")
            count += len(required) if isinstance(required, list) else 0
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return min(count * per_key, cap)
