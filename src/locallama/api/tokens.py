"""The tokenizer routes harnesses and editors use, as wire shapes: pure translations.

Two peers define them, and one route answers both (``server/tokens_api.py``):

* vLLM (https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html,
  "Tokenizer API"): ``POST /tokenize`` ``{model?, prompt, add_special_tokens=true,
  return_token_strs=false}`` or ``{model?, messages, ...}`` ->
  ``{count, max_model_len, tokens, token_strs}``; ``POST /detokenize``
  ``{model?, tokens}`` -> ``{prompt}``; ``GET /tokenizer_info`` -> the tokenizer's
  configuration as Hugging Face's ``tokenizer_config.json`` names it
  (``tokenizer_class``, ``bos_token``, ``eos_token``, ``model_max_length``,
  ``chat_template``, ...). lm-evaluation-harness's ``RemoteTokenizer`` reads these.
* llama-server (https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md):
  ``POST /tokenize`` ``{content, add_special=false, with_pieces=false}`` ->
  ``{tokens}`` (with pieces: ``[{id, piece}]``, the piece a string, or its bytes
  where they are not valid UTF-8); ``POST /detokenize`` ``{tokens}`` -> ``{content}``.

A tokenize body with ``content`` is llama-server's and gets its defaults and shape;
one with ``prompt`` or ``messages`` is vLLM's.  The two detokenize bodies are the
same, so its answer carries both ``prompt`` and ``content``.  ``model`` may be left
out, as both peers serve one model: ``default_model`` picks one.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from locallama.api.common import UnicodeBody
from locallama.errors import InvalidRequest
from locallama.runtime.types import TokenizerInfo

JSON = dict[str, Any]


class TokenizeBody(UnicodeBody):
    """``POST /tokenize`` in vLLM's shape (``prompt`` or ``messages``) or llama-server's
    (``content``); other fields the peers take (``chat_template``, ``parse_special``)
    are ignored."""

    model: str | None = None
    prompt: str | None = None  # vLLM: text
    messages: list[dict[str, Any]] | None = None  # vLLM: a chat, rendered by the template
    add_special_tokens: bool | None = None  # vLLM: default true for prompt
    return_token_strs: bool = False  # vLLM
    add_generation_prompt: bool = True  # vLLM (chat); the template always adds one here
    content: str | None = None  # llama-server: text
    add_special: bool = False  # llama-server
    with_pieces: bool = False  # llama-server

    @property
    def llama_server(self) -> bool:
        """Whether the body is llama-server's (it names ``content``)."""
        return self.content is not None

    def text(self) -> str:
        """The text to tokenize; InvalidRequest when there is none and no messages."""
        text = self.content if self.llama_server else self.prompt
        if text is None:
            raise InvalidRequest("send prompt or messages (vLLM) or content (llama-server)",
                                 "prompt")
        return text

    def with_bos(self) -> bool:
        """Whether the model's BOS is added: ``add_special`` (llama-server, default
        false) or ``add_special_tokens`` (vLLM, default true)."""
        if self.llama_server:
            return self.add_special
        return True if self.add_special_tokens is None else self.add_special_tokens


class DetokenizeBody(UnicodeBody):
    """``POST /detokenize``: ``{model?, tokens}`` (vLLM and llama-server alike)."""

    model: str | None = None
    tokens: list[int] = Field(default_factory=list)


def default_model(asked: str | None, loaded: list[str], stored: list[str]) -> str:
    """The model a tokenizer route works on: the one asked for, else the only loaded
    model, else the only stored one.  InvalidRequest (param ``model``) when that is
    ambiguous or there is none."""
    if asked:
        return asked
    for names in (loaded, stored):
        if len(names) == 1:
            return names[0]
    if not stored:
        raise InvalidRequest("no model is stored; pull one first", "model")
    raise InvalidRequest(f"model is required: {len(stored)} models are stored", "model")


def piece_json(piece: bytes) -> str | list[int]:
    """A token's piece as llama-server writes it: the text, or its byte values where
    they are not valid UTF-8 on their own (part of a multi-byte character)."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return list(piece)


def tokenize_answer(body: TokenizeBody, tokens: list[int], pieces: list[bytes] | None,
                    max_model_len: int | None) -> JSON:
    """The answer in the body's peer's shape (see the module's docstring); ``pieces``
    when the body asked for them (``with_pieces`` / ``return_token_strs``)."""
    if body.llama_server:
        if body.with_pieces and pieces is not None:
            return {"tokens": [{"id": t, "piece": piece_json(p)}
                               for t, p in zip(tokens, pieces, strict=True)]}
        return {"tokens": tokens}
    strs = None
    if body.return_token_strs and pieces is not None:
        strs = [p.decode("utf-8", errors="replace") for p in pieces]
    return {"count": len(tokens), "max_model_len": max_model_len or 0, "tokens": tokens,
            "token_strs": strs}


def detokenize_answer(text: str) -> JSON:
    """``{"prompt": text, "content": text}``: vLLM's and llama-server's answer at once."""
    return {"prompt": text, "content": text}


def tokenizer_info_json(info: TokenizerInfo) -> JSON:
    """vLLM's ``/tokenizer_info``: the tokenizer_config.json fields a harness reads.

    ``tokenizer_class`` names llama.cpp's tokenizer of the GGUF's kind
    (``LlamaCppTokenizer``; ``tokenizer_model`` is ``tokenizer.ggml.model``), since
    there is no Hugging Face class behind it; ``model_max_length`` is the context
    length the model was trained for."""
    out: JSON = {
        "tokenizer_class": "LlamaCppTokenizer",
        "tokenizer_model": info.tokenizer_model,
        "model": info.model,
        "vocab_size": info.vocab_size,
        "model_max_length": info.context_length,
        "bos_token": info.bos_token,
        "eos_token": info.eos_token,
        "unk_token": info.unk_token,
        "pad_token": info.pad_token,
        "add_bos_token": info.add_bos_token,
        "add_eos_token": info.add_eos_token,
    }
    if info.chat_template:
        out["chat_template"] = info.chat_template
    return out


def tokenizer_info_from_json(data: JSON) -> TokenizerInfo:
    """The inverse of ``tokenizer_info_json`` (the client's side)."""
    return TokenizerInfo(
        model=str(data.get("model") or ""), tokenizer_model=str(data.get("tokenizer_model") or ""),
        vocab_size=int(data.get("vocab_size") or 0), context_length=data.get("model_max_length"),
        bos_token=data.get("bos_token"), eos_token=data.get("eos_token"),
        add_bos_token=bool(data.get("add_bos_token")),
        add_eos_token=bool(data.get("add_eos_token")),
        chat_template=data.get("chat_template"), unk_token=data.get("unk_token"),
        pad_token=data.get("pad_token"))
