import json

from ananke import PyConstraintIR, PyGenerationContext, PyGenerationRequest
from ananke.outline import schema_outline
from ananke.prompting import MAX_SCHEMA_CHARS_IN_PROMPT, build_messages, extract_code, language_of


def test_language_from_context_or_file_extension():
    assert language_of(PyGenerationRequest("p")) is None
    assert language_of(PyGenerationRequest("p", context=PyGenerationContext(language="Rust"))) == "rust"
    request = PyGenerationRequest("p", context=PyGenerationContext(current_file="src/app.ts"))
    assert language_of(request) == "typescript"


def test_system_message_is_shaped_by_context_and_constraints():
    request = PyGenerationRequest(
        "Add a health route.",
        [
            PyConstraintIR(
                "j",
                json_schema='{"type": "object", "properties": {"route": {"type": "string"}}}',
                regex_patterns=["x+"],
            )
        ],
        context=PyGenerationContext(current_file="server/routes.py", project_root="/secret/root"),
    )
    system, user = build_messages(request)
    assert user == {"role": "user", "content": "Add a health route."}
    assert "Write python code." in system["content"]
    assert "server/routes.py" in system["content"]
    assert "{route?: string}" in system["content"] and "x+" in system["content"]
    assert "/secret/root" not in system["content"]  # names only what is needed, reads nothing
    assert "route?" not in build_messages(request, include_schema=False)[0]["content"]


def test_huge_schema_is_cut_in_the_prompt_only():
    schema = json.dumps({"properties": {f"field_{i}": {"type": "string"} for i in range(2000)}})
    system, _ = build_messages(PyGenerationRequest("p", [PyConstraintIR("j", json_schema=schema)]))
    assert "…(truncated)" in system["content"]
    assert len(system["content"]) < MAX_SCHEMA_CHARS_IN_PROMPT + 500


def test_extract_code():
    answer = "Here:\n```js\nlet a = 1;\n```\nand\n```python\nx = 1\n```\n"
    assert extract_code(answer, "python") == "x = 1"
    assert extract_code(answer, None) == "let a = 1;"
    assert extract_code("```python\nprint(1)", "python") == "print(1)"  # unterminated fence
    assert extract_code("  just text  ", "go") == "just text"


def test_outline_is_short_and_says_what_the_model_needs():
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://x/y.json",
        "description": "A long paragraph the model cannot use. " * 20,
        "type": "object",
        "required": ["name", "role"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "The name."},
            "age": {"type": "integer", "minimum": 0},
            "role": {"enum": ["admin", "user"]},
            "tags": {"type": "array", "items": {"type": "string", "format": "uri"}},
            "home": {"$ref": "#/definitions/address"},
            "kids": {"type": "array", "items": {"$ref": "#"}},
        },
        "definitions": {"address": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    assert schema_outline(schema) == (
        '{name: string (1.. chars); age?: integer (>= 0); role: "admin" | "user"; '
        "tags?: (string (uri))[]; home?: Address; kids?: Root[]}\n"
        "type Address = {city?: string}\n"
        'type Root = {name: string (1.. chars); age?: integer (>= 0); role: "admin" | "user"; '
        "tags?: (string (uri))[]; home?: Address; kids?: Root[]}"
    )
    assert len(schema_outline(schema)) < len(json.dumps(schema)) / 4
