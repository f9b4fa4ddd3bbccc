"""The `ananke` command: a thin shell over the library."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ananke.client import Ananke
from ananke.config import ENV_API_KEY, ENV_ENDPOINT
from ananke.errors import AnankeError
from ananke.types import (
    PyConstraintIR,
    PyGenerationContext,
    PyGenerationRequest,
    PyGenerationResponse,
)

app = typer.Typer(
    help="Constrained code generation: output that satisfies your JSON Schema, grammar or regex.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from ananke import __version__

        print(f"ananke {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Constrained code generation: output that satisfies your JSON Schema, grammar or regex."""


def _text_or_file(value: str | None, option: str) -> str | None:
    """`@path` reads a file; anything else is the text itself."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=option) from None


def _summary(response: PyGenerationResponse) -> str:
    meta, validation = response.metadata, response.validation
    if not response.provenance.constraints_applied:
        verdict = "[dim]no constraints[/dim]"
    elif validation.all_satisfied:
        verdict = "[green]valid[/green] (" + ", ".join(validation.satisfied) + ")"
    else:
        verdict = "[red]INVALID[/red] " + "; ".join(f"{k}: {v}" for k, v in validation.errors.items())
    seconds = meta.generation_time_ms / 1000
    rate = meta.tokens_generated / seconds if seconds > 0 else 0.0
    return (
        f"{verdict} · {meta.tokens_generated} tokens ({meta.forced_tokens} forced) · "
        f"{rate:.1f} tok/s · {meta.finish_reason} · {response.provenance.model}"
    )


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to generate.")],
    json_schema: Annotated[
        str | None, typer.Option("--json-schema", help="JSON Schema text, or @file.")
    ] = None,
    grammar: Annotated[
        str | None, typer.Option("--grammar", help="Lark or GBNF grammar text, or @file.")
    ] = None,
    regex: Annotated[
        list[str] | None,
        typer.Option("--regex", help="Regex the output must fully match (repeatable)."),
    ] = None,
    language: Annotated[str | None, typer.Option("--language", help="Target language.")] = None,
    file: Annotated[str | None, typer.Option("--file", help="Name of the file the code is for.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 512,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0)] = 0.0,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help=f"Endpoint (default: ${ENV_ENDPOINT}, else 'local')."),
    ] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help=f"Default: ${ENV_API_KEY}.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds.")] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole response as JSON.")] = False,
) -> None:
    """Generate code; code on stdout, a one-line summary on stderr."""
    constraint = None
    schema_text = _text_or_file(json_schema, "--json-schema")
    grammar_text = _text_or_file(grammar, "--grammar")
    if schema_text is not None or grammar_text is not None or regex:
        constraint = PyConstraintIR(
            "cli", json_schema=schema_text, grammar=grammar_text, regex_patterns=regex or []
        )
    try:
        request = PyGenerationRequest(
            prompt,
            [constraint] if constraint else [],
            max_tokens=max_tokens,
            temperature=temperature,
            context=PyGenerationContext(current_file=file, language=language) if (file or language) else None,
            seed=seed,
        )
        client = Ananke(
            endpoint or os.environ.get(ENV_ENDPOINT) or "local",
            modal_api_key=api_key or os.environ.get(ENV_API_KEY),
            timeout_secs=timeout,
        )
        response = asyncio.run(_generate(client, request, show_progress=not as_json))
    except AnankeError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(response.to_dict(), indent=2))
    else:
        print(response.code)
    err.print(_summary(response), highlight=False, soft_wrap=True)
    if not response.validation.all_satisfied and response.provenance.constraints_applied:
        raise typer.Exit(1)


async def _generate(
    client: Ananke, request: PyGenerationRequest, show_progress: bool
) -> PyGenerationResponse:
    chars = 0
    with err.status("loading model and compiling constraints…", spinner="dots") as status:
        async for item in client.generate_stream(request):
            if isinstance(item, PyGenerationResponse):
                return item
            chars += len(item)
            if show_progress and sys.stderr.isatty():
                status.update(f"generating… {chars} characters")
    raise AnankeError("no response")  # pragma: no cover
