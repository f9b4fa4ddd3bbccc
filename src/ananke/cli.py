"""The `ananke` command: a thin shell over the library."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ananke.bench.cli import bench
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


class SchemaMode(str, Enum):
    strict = "strict"
    relaxed = "relaxed"


EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint", help=f"Endpoint (default: ${ENV_ENDPOINT}, else 'local').")
]
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", help=f"Default: ${ENV_API_KEY}.")]
OpenObjectsOpt = Annotated[
    bool,
    typer.Option(
        "--open-objects",
        help="Let JSON objects take undeclared keys where the schema does not forbid them "
        "(by default they are decoded closed).",
    ),
]
SchemaModeOpt = Annotated[
    SchemaMode | None,
    typer.Option(
        "--schema-mode",
        help="strict: refuse JSON Schema keywords no decoder can enforce; relaxed: weaken them while "
        "decoding, then validate against the full schema.",
    ),
]


@contextmanager
def reported_errors() -> Iterator[None]:
    """An AnankeError becomes one red line on stderr and exit status 2."""
    try:
        yield
    except AnankeError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)  # '[gpu]' is not markup
        raise typer.Exit(2) from None


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
    extra = f" · attempt {meta.attempts}" if meta.attempts > 1 else ""
    if meta.budget_closed:
        extra += f" · closed to fit max_tokens ({meta.closing_tokens} tokens)"
    if meta.loop_breaks:
        extra += f" · loop closed ({meta.closing_tokens} tokens)"
    if meta.relaxed:
        extra += f" · relaxed {len(meta.relaxed)}: " + ", ".join(meta.relaxed)
    return (
        f"{verdict} · {meta.tokens_generated} tokens ({meta.forced_tokens} forced) · "
        f"{rate:.1f} tok/s · {meta.finish_reason} · {response.provenance.model}{extra}"
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
    schema_mode: SchemaModeOpt = None,
    max_attempts: Annotated[
        int | None,
        typer.Option(
            "--max-attempts",
            min=1,
            max=10,
            help="Regenerate a rejected output up to this many times (default: 3 when relaxed, else 1).",
        ),
    ] = None,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling (0-1].")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Sample among the k likeliest (0: off).")] = 0,
    min_p: Annotated[float, typer.Option("--min-p", help="Drop tokens below min_p × the likeliest.")] = 0.0,
    repetition_penalty: Annotated[float, typer.Option("--repetition-penalty", help="1: off.")] = 1.0,
    frequency_penalty: Annotated[float, typer.Option("--frequency-penalty")] = 0.0,
    presence_penalty: Annotated[float, typer.Option("--presence-penalty")] = 0.0,
    open_objects: OpenObjectsOpt = False,
    no_loop_guard: Annotated[
        bool, typer.Option("--no-loop-guard", help="Do not close an output that keeps repeating itself.")
    ] = False,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds.")] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole response as JSON.")] = False,
    stream: Annotated[bool, typer.Option("--stream", help="Print the raw text as it is generated.")] = False,
) -> None:
    """Generate code; code on stdout, a one-line summary on stderr."""
    if stream and as_json:
        raise typer.BadParameter("use either --stream or --json", param_hint="--stream")
    constraint = None
    schema_text = _text_or_file(json_schema, "--json-schema")
    grammar_text = _text_or_file(grammar, "--grammar")
    if schema_text is not None or grammar_text is not None or regex:
        constraint = PyConstraintIR(
            "cli", json_schema=schema_text, grammar=grammar_text, regex_patterns=regex or []
        )
    with reported_errors():
        request = PyGenerationRequest(
            prompt,
            [constraint] if constraint else [],
            max_tokens=max_tokens,
            temperature=temperature,
            context=PyGenerationContext(current_file=file, language=language) if (file or language) else None,
            seed=seed,
            schema_mode=schema_mode.value if schema_mode else None,
            max_attempts=max_attempts,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            closed_objects=not open_objects,
            loop_guard=not no_loop_guard,
        )
        client = _client(endpoint, api_key, timeout)
        response = asyncio.run(_generate(client, request, show_progress=not as_json, echo=stream))
    if as_json:
        print(json.dumps(response.to_dict(), indent=2))
    elif stream:
        print()  # the text is already out
    else:
        print(response.code)
    err.print(_summary(response), highlight=False, soft_wrap=True)
    if not response.validation.all_satisfied and response.provenance.constraints_applied:
        raise typer.Exit(1)


async def _generate(
    client: Ananke, request: PyGenerationRequest, show_progress: bool, echo: bool = False
) -> PyGenerationResponse:
    """Run one generation with a spinner on stderr; `echo` writes the text to stdout as it comes.

    Without `echo` this is `generate` (which may make several attempts); a stream makes one.
    """
    chars = 0
    with err.status("loading model and compiling constraints…", spinner="dots") as status:
        if not echo:
            return await client.generate(request)
        async for item in client.generate_stream(request):
            if isinstance(item, PyGenerationResponse):
                return item
            chars += len(item)
            if echo:
                if chars == len(item):
                    status.stop()  # the text itself shows the progress now
                sys.stdout.write(item)
                sys.stdout.flush()
            elif show_progress and sys.stderr.isatty():
                status.update(f"generating… {chars} characters")
    raise AnankeError("no response")  # pragma: no cover


# ---------------------------------------------------------------------- service commands


def _client(endpoint: str | None, api_key: str | None, timeout: float = 300) -> Ananke:
    return Ananke(
        endpoint or os.environ.get(ENV_ENDPOINT) or "local",
        modal_api_key=api_key or os.environ.get(ENV_API_KEY),
        timeout_secs=timeout,
    )


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    engine: Annotated[
        str, typer.Option("--engine", help="llamacpp (CPU) or vllm (GPU; needs the gpu extra).")
    ] = "llamacpp",
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="llamacpp: GGUF path (default: embedded SmolLM2); vllm: HF model id or path."
        ),
    ] = None,
    tensor_parallel_size: Annotated[
        int, typer.Option("--tensor-parallel-size", min=1, help="vllm: GPUs per model.")
    ] = 1,
    gpu_memory_utilization: Annotated[
        float, typer.Option("--gpu-memory-utilization", min=0.05, max=1.0, help="vllm: GPU memory share.")
    ] = 0.90,
    max_model_len: Annotated[
        int | None, typer.Option("--max-model-len", min=1, help="vllm: context length (default: model's).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Require this bearer key (default: $ANANKE_API_KEY).")
    ] = None,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1)] = 4,
    max_queue: Annotated[int, typer.Option("--max-queue", min=0)] = 32,
    max_tokens: Annotated[int, typer.Option("--max-tokens-limit", min=1)] = 4096,
    request_timeout: Annotated[float, typer.Option("--request-timeout", min=1)] = 300,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    schema_mode: SchemaModeOpt = None,
    open_objects: OpenObjectsOpt = False,
) -> None:
    """Run the Ananke inference service (HTTP, wire protocol v1)."""
    import logging

    import uvicorn

    from ananke.engines import ENGINES, make_engine
    from ananke.server.app import ServerSettings, create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if engine not in ENGINES:
        err.print(
            f"[red]error:[/red] unknown --engine {engine!r}; available: {', '.join(ENGINES)}", highlight=False
        )
        raise typer.Exit(2)
    if engine == "llamacpp" and model is not None and not Path(model).is_file():
        err.print(f"[red]error:[/red] --model {model!r} is not a GGUF file", highlight=False)
        raise typer.Exit(2)
    if engine == "vllm" and model is None:
        err.print(
            "[red]error:[/red] --engine vllm needs --model (a Hugging Face id or path)", highlight=False
        )
        raise typer.Exit(2)
    settings = ServerSettings(
        api_key=api_key or os.environ.get("ANANKE_API_KEY") or None,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        max_tokens=max_tokens,
        request_timeout_s=request_timeout,
        schema_mode=schema_mode.value if schema_mode else "strict",
        closed_objects=not open_objects,
    )
    with reported_errors():  # e.g. vllm not installed: the install hint, at once
        hosted = make_engine(
            engine, model, tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
        )  # fmt: skip
    service, name = create_app(hosted, settings), model or hosted.model_name
    err.print("loading model…", highlight=False)
    err.print(
        f"serving {name} with {engine} on http://{host}:{port} "
        f"(auth {'on' if settings.api_key else 'off'}; docs at /docs)",
        highlight=False,
    )
    uvicorn.run(service, host=host, port=port, log_level=log_level.lower())


@app.command()
def health(endpoint: EndpointOpt = None, api_key: ApiKeyOpt = None) -> None:
    """Exit 0 when the endpoint is healthy, 1 otherwise."""
    client = _client(endpoint, api_key, timeout=10)
    ok = asyncio.run(client.health_check())
    print("healthy" if ok else "unhealthy")
    raise typer.Exit(0 if ok else 1)


@app.command("compile")
def compile_command(
    json_schema: Annotated[str | None, typer.Option("--json-schema", help="Text or @file.")] = None,
    grammar: Annotated[str | None, typer.Option("--grammar", help="Text or @file.")] = None,
    regex: Annotated[list[str] | None, typer.Option("--regex")] = None,
    schema_mode: SchemaModeOpt = None,
    open_objects: OpenObjectsOpt = False,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Compile a constraint and print the result as JSON (on the service for http endpoints)."""
    with reported_errors():
        constraint = PyConstraintIR(
            "cli",
            json_schema=_text_or_file(json_schema, "--json-schema"),
            grammar=_text_or_file(grammar, "--grammar"),
            regex_patterns=regex or [],
        )
        client = _client(endpoint, api_key)
        result = asyncio.run(
            client.compile_constraints(
                [constraint],
                on_service=True,
                schema_mode=schema_mode.value if schema_mode else None,
                closed_objects=not open_objects,
            )
        )
    print(json.dumps(result, indent=2))


cache_app = typer.Typer(help="The compile cache of a service.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("stats")
def cache_stats(endpoint: EndpointOpt = None, api_key: ApiKeyOpt = None) -> None:
    """Print the cache statistics of the endpoint."""
    with reported_errors():
        print(json.dumps(asyncio.run(_client(endpoint, api_key).cache_stats(on_service=True)), indent=2))


@cache_app.command("clear")
def cache_clear(endpoint: EndpointOpt = None, api_key: ApiKeyOpt = None) -> None:
    """Empty the endpoint's compile cache."""
    with reported_errors():
        asyncio.run(_client(endpoint, api_key).clear_cache(on_service=True))
    print("cleared")


# Benchmarks: the command lives with the suites (ananke.bench).
app.command()(bench)
