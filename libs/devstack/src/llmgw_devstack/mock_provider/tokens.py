"""Deterministic token accounting of the mock provider (see the package docstring for the rules)."""

from __future__ import annotations

from typing import Any

REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
LONG_SYSTEM_CHARS = 1000


def text_chars(obj: Any) -> int:
    """Characters of every string *value* inside a JSON value (keys are not counted)."""
    if type(obj) is str:
        return len(obj)
    n = 0
    if type(obj) is list:
        for item in obj:
            n += len(item) if type(item) is str else text_chars(item)
    elif type(obj) is dict:
        for item in obj.values():
            n += len(item) if type(item) is str else text_chars(item)
    return n


def ceil4(n: int) -> int:
    return (n + 3) // 4


def messages_tokens(messages: list[Any]) -> int:
    """3 per request + for each message 4 + ceil(chars / 4)."""
    n = 3
    for message in messages:
        n += 4 + ceil4(text_chars(message))
    return n


def chat_prompt_tokens(data: dict[str, Any]) -> int:
    n = messages_tokens(data["messages"])
    tools = data.get("tools")
    if tools:
        n += ceil4(text_chars(tools))
    return n


def responses_prompt_tokens(data: dict[str, Any]) -> int:
    value = data.get("input")
    if isinstance(value, list):
        n = messages_tokens(value)
    elif isinstance(value, str):
        n = 3 + 4 + ceil4(len(value))
    else:
        n = 3
    instructions = data.get("instructions")
    if instructions:
        n += ceil4(text_chars(instructions))
    tools = data.get("tools")
    if tools:
        n += ceil4(text_chars(tools))
    return n


def completion_prompt_tokens(data: dict[str, Any]) -> int:
    return max(1, ceil4(text_chars(data.get("prompt"))))


def anthropic_prompt_tokens(data: dict[str, Any]) -> int:
    """Total input tokens of a Messages request (what count_tokens answers)."""
    n = messages_tokens(data.get("messages") or [])
    system = data.get("system")
    if system:
        n += ceil4(text_chars(system))
    tools = data.get("tools")
    if tools:
        n += ceil4(text_chars(tools))
    return n


def is_reasoning_model(model: str) -> bool:
    return model.startswith(REASONING_PREFIXES)


def _long_system(items: Any) -> bool:
    if not isinstance(items, list):
        return False
    for item in items:
        if (
            isinstance(item, dict)
            and item.get("role") in ("system", "developer")
            and text_chars(item.get("content")) > LONG_SYSTEM_CHARS
        ):
            return True
    return False


def openai_cache_hit(data: dict[str, Any]) -> bool:
    """A prompt-cache hit: ``prompt_cache_key`` given, or a system/developer message (or Responses
    ``instructions``) longer than 1,000 characters."""
    if "prompt_cache_key" in data:
        return True
    if _long_system(data.get("messages")) or _long_system(data.get("input")):
        return True
    instructions = data.get("instructions")
    return isinstance(instructions, str) and len(instructions) > LONG_SYSTEM_CHARS


def has_cache_control(obj: Any) -> bool:
    if type(obj) is dict:
        if "cache_control" in obj:
            return True
        return any(has_cache_control(v) for v in obj.values() if type(v) in (dict, list))
    if type(obj) is list:
        return any(has_cache_control(v) for v in obj if type(v) in (dict, list))
    return False


def anthropic_split(total: int, cache: bool) -> tuple[int, int, int]:
    """(input_tokens, cache_read_input_tokens, cache_creation_input_tokens) for a prompt of ``total``."""
    if not cache:
        return total, 0, 0
    read = total // 2
    creation = total // 4
    return total - read - creation, read, creation


def tool_tokens(name: str, arguments: str) -> int:
    """Completion tokens of a tool call: 8 + ceil((len(name) + len(arguments)) / 4)."""
    return 8 + ceil4(len(name) + len(arguments))


# --- deterministic tool arguments from a JSON schema -------------------------------------------


def sample_value(schema: Any, depth: int = 0) -> Any:
    if not isinstance(schema, dict) or depth > 6:
        return "mock"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            for option in options:
                if not (isinstance(option, dict) and option.get("type") == "null"):
                    return sample_value(option, depth + 1)
            return None
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "string":
        return "mock"
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        items = schema.get("items")
        return [sample_value(items, depth + 1)] if isinstance(items, dict) else []
    if kind == "object" or "properties" in schema:
        return sample_object(schema, depth + 1)
    return "mock"


def sample_object(schema: Any, depth: int = 0) -> dict[str, Any]:
    """An object with every declared property set to a type-appropriate constant
    (first enum value, ``"mock"``, ``1``, ``1.5``, ``true``, ...)."""
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    return {name: sample_value(sub, depth + 1) for name, sub in props.items()}


def split_pieces(text: str, parts: int) -> list[str]:
    """Split ``text`` into at most ``parts`` non-empty consecutive pieces."""
    if not text:
        return []
    parts = max(1, min(parts, len(text)))
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]
