"""XGrammar (vLLM's and SGLang's default grammar backend) as a peer, on the same GGUF vocabulary.

`TokenizerInfo` is built from the model's own vocabulary as llama.cpp reads it from the GGUF (each
token's bytes, raw), with `<|im_end|>` (id 2) as the stop token, so masks are over exactly the
tokens Ananke's engine samples from. The workers here run inside an `isolate.Isolated` child
(`run_isolated`): compile time (compile suite), acceptance of token lists (compliance) and mask
time along given outputs (decode).
"""

from __future__ import annotations

import time

END_TOKEN = 2  # <|im_end|>


def gguf_vocabulary(model_path: str) -> list[bytes]:
    """Every token's bytes, in id order, as llama.cpp decodes them (special tokens by their text)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path, vocab_only=True, verbose=False)
    return [llm.detokenize([i], special=True) for i in range(llm.n_vocab())]


def tokenizer_info(model_path: str):
    import xgrammar as xgr

    vocab = gguf_vocabulary(model_path)
    return xgr.TokenizerInfo(
        vocab, vocab_type=xgr.VocabType.RAW, vocab_size=len(vocab), stop_token_ids=[END_TOKEN]
    )


def _compiler(model_path: str):
    """XGrammar, a compiler for the GGUF vocabulary (one thread, no cache) and a one-row bitmask."""
    import xgrammar as xgr

    info = tokenizer_info(model_path)
    compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    return xgr, compiler, xgr.allocate_token_bitmask(1, info.vocab_size)


def _compile(compiler, schema: str, **options):
    """The compiled grammar, or {"compile_error": …} for a schema XGrammar refuses."""
    try:
        return compiler.compile_json_schema(schema, **options)
    except Exception as exc:  # XGrammar raises RuntimeError/ValueError for what it cannot express
        return {"compile_error": f"{type(exc).__name__}: {exc}"[:200]}


def compile_worker(model_path: str):
    """Per schema text: XGrammar's compile time (no cache) and the time of the first token mask."""
    xgr, compiler, bitmask = _compiler(model_path)

    def one(schema: str) -> dict:
        start = time.perf_counter()
        grammar = _compile(compiler, schema, any_whitespace=False)
        if isinstance(grammar, dict):
            return grammar
        compile_ms = (time.perf_counter() - start) * 1000
        matcher = xgr.GrammarMatcher(grammar)
        start = time.perf_counter()
        matcher.fill_next_token_bitmask(bitmask)
        return {
            "compile_ms": round(compile_ms, 4),
            "first_mask_ms": round((time.perf_counter() - start) * 1000, 4),
        }

    return one


def compliance_worker(model_path: str):
    """Per (schema text, token lists): for each list, whether a fresh matcher accepts every token
    and then the stop token (the output may end there). The grammar follows the schema as written:
    undeclared properties allowed unless it says otherwise, compact JSON (no free whitespace)."""
    xgr, compiler, _ = _compiler(model_path)

    def one(item: tuple[str, list[list[int]]]) -> dict:
        schema, token_lists = item
        grammar = _compile(compiler, schema, strict_mode=False, any_whitespace=False, separators=(",", ":"))
        if isinstance(grammar, dict):
            return grammar
        accepted = []
        for tokens in token_lists:
            matcher = xgr.GrammarMatcher(grammar)
            accepted.append(all(matcher.accept_token(t) for t in tokens) and matcher.accept_token(END_TOKEN))
        return {"accepted": accepted}

    return one


def replay_worker(model_path: str):
    """Per (schema text, output token ids): the time (µs) of XGrammar's token mask at each state
    along the output, the start and the end included; strict mode (no undeclared properties, as
    Ananke's closed objects), compact JSON. A token XGrammar refuses ends the replay there."""
    xgr, compiler, bitmask = _compiler(model_path)

    def one(item: tuple[str, list[int]]) -> dict:
        schema, tokens = item
        grammar = _compile(compiler, schema, any_whitespace=False, separators=(",", ":"))
        if isinstance(grammar, dict):
            return grammar
        matcher, times = xgr.GrammarMatcher(grammar), []
        for i, token in enumerate([*tokens, None]):
            start = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask)
            times.append(round((time.perf_counter() - start) * 1e6, 1))
            if token is not None and not matcher.accept_token(token):
                return {"mask_times_us": times, "rejected_at": i}
        return {"mask_times_us": times}

    return one


NOT_INSTALLED = "XGrammar not installed: pip install 'ananke[xgrammar]'"


def run_isolated(worker: str, items: list, label: str) -> tuple[list[dict], dict]:
    """`worker` (a function of this module) over the items in an isolated child, with a progress
    bar; (a result per item, run facts: version, crashes) or ([], {"skipped": why})."""
    from ananke.bench.common import progress
    from ananke.bench.isolate import Isolated
    from ananke.engines.model import default_model_path

    if version() is None:
        return [], {"skipped": NOT_INSTALLED}
    with Isolated(f"ananke.bench.xgrammar_peer:{worker}", (str(default_model_path()),)) as peer:
        with progress(label, len(items)) as advance:
            rows = peer.map(items, advance)
        facts = {"version": version(), "crashes": peer.crashes, "start_error": peer.start_error}
    return rows, facts


def version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xgrammar")
    except PackageNotFoundError:
        return None
