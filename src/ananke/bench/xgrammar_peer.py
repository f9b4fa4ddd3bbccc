"""XGrammar (vLLM's and SGLang's default grammar backend) as a peer, on the same GGUF vocabulary.

`TokenizerInfo` is built from the model's own vocabulary as llama.cpp reads it from the GGUF (each
token's bytes, raw), with `<|im_end|>` (id 2) as the stop token, so masks are over exactly the
tokens Ananke's engine samples from. The functions here run inside an `isolate.Isolated` child.
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


def compile_worker(model_path: str):
    """Per schema text: XGrammar's compile time (no cache) and the time of the first token mask."""
    import xgrammar as xgr

    info = tokenizer_info(model_path)
    compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    bitmask = xgr.allocate_token_bitmask(1, info.vocab_size)

    def one(schema: str) -> dict:
        start = time.perf_counter()
        try:
            grammar = compiler.compile_json_schema(schema, any_whitespace=False)
        except Exception as exc:  # XGrammar raises RuntimeError/ValueError for what it cannot express
            return {"compile_error": f"{type(exc).__name__}: {exc}"[:200]}
        compile_ms = (time.perf_counter() - start) * 1000
        matcher = xgr.GrammarMatcher(grammar)
        start = time.perf_counter()
        matcher.fill_next_token_bitmask(bitmask)
        return {
            "compile_ms": round(compile_ms, 4),
            "first_mask_ms": round((time.perf_counter() - start) * 1000, 4),
        }

    return one


def version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xgrammar")
    except PackageNotFoundError:
        return None
