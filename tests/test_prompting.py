from ananke import PyConstraintIR, PyGenerationContext, PyGenerationRequest
from ananke.prompting import MAX_SCHEMA_CHARS_IN_PROMPT, build_messages, extract_code, language_of


def test_language_from_context_or_file_extension():
    assert language_of(PyGenerationRequest("p")) is None
    assert language_of(PyGenerationRequest("p", context=PyGenerationContext(language="Rust"))) == "rust"
    request = PyGenerationRequest("p", context=PyGenerationContext(current_file="src/app.ts"))
    assert language_of(request) == "typescript"


def test_system_message_is_shaped_by_context_and_constraints():
    request = PyGenerationRequest(
        "Add a health route.",
        [PyConstraintIR("j", json_schema='{"type": "object"}', regex_patterns=["x+"])],
        context=PyGenerationContext(current_file="server/routes.py", project_root="/secret/root"),
    )
    system, user = build_messages(request)
    assert user == {"role": "user", "content": "Add a health route."}
    assert "Write python code." in system["content"]
    assert "server/routes.py" in system["content"]
    assert '{"type": "object"}' in system["content"] and "x+" in system["content"]
    assert "/secret/root" not in system["content"]  # names only what is needed, reads nothing
    assert '{"type"' not in build_messages(request, include_schema=False)[0]["content"]


def test_huge_schema_is_cut_in_the_prompt_only():
    schema = '{"description": "' + "x" * 10_000 + '"}'
    system, _ = build_messages(PyGenerationRequest("p", [PyConstraintIR("j", json_schema=schema)]))
    assert "…(truncated)" in system["content"]
    assert len(system["content"]) < MAX_SCHEMA_CHARS_IN_PROMPT + 500


def test_extract_code():
    answer = "Here:\n```js\nlet a = 1;\n```\nand\n```python\nx = 1\n```\n"
    assert extract_code(answer, "python") == "x = 1"
    assert extract_code(answer, None) == "let a = 1;"
    assert extract_code("```python\nprint(1)", "python") == "print(1)"  # unterminated fence
    assert extract_code("  just text  ", "go") == "just text"
