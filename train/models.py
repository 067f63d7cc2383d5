"""What a base model is, read from its config before anything is trained: the one place that tells a decoder-only
model from an encoder-decoder or an encoder, and that turns "cannot load it" into one line.

A task decides from this whether it can train the model (`Task.model_problem`), and the registry picks the task
from it (`train.tasks.task_for_version`). Reading a model's config is cheap (a small JSON file); it is cached per
path, so choosing a task and building the model read it once.

The families, from transformers' own auto-class mappings (no list of model names here):

    decoder          a causal LM that is not also a masked LM (GPT-2, Llama, Qwen, SmolLM, Mistral, ...)
    encoder-decoder  config.is_encoder_decoder (T5, BART, a saved EncoderDecoderModel)
    encoder          everything else (BERT, RoBERTa, MiniLM, ...); BERT-likes can be warm-started as both halves
                     of an EncoderDecoderModel (`warm_startable`)
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline.errors import UserError

DECODER, ENCODER_DECODER, ENCODER = "decoder", "encoder-decoder", "encoder"


@dataclass(frozen=True)
class BaseModel:
    """A base model as its config describes it."""

    path: str  # what from_pretrained gets: a local folder or a Hub id
    model_type: str
    architectures: tuple[str, ...]
    family: str  # DECODER | ENCODER_DECODER | ENCODER
    warm_startable: bool  # an encoder whose model type has a causal-LM class (a decoder with cross-attention)
    config: Any  # the transformers PretrainedConfig

    def describe(self) -> str:
        """`decoder-only, LlamaForCausalLM`: for messages."""
        kind = {DECODER: "decoder-only", ENCODER_DECODER: "encoder-decoder", ENCODER: "encoder-only"}[self.family]
        return f"{kind}, {self.architectures[0] if self.architectures else self.model_type}"


def base_model(path: str) -> BaseModel:
    """The base model at `path` (a folder or a Hub id); a one-line UserError when it is neither a model folder on
    disk nor reachable on the Hub."""
    return _inspect(str(path))


@functools.lru_cache(maxsize=32)
def _inspect(path: str) -> BaseModel:
    from transformers.models.auto.modeling_auto import (  # noqa: PLC0415
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    config = _load_config(path)
    model_type = getattr(config, "model_type", "") or ""
    architectures = tuple(getattr(config, "architectures", None) or ())
    causal_class = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if getattr(config, "is_encoder_decoder", False):
        family = ENCODER_DECODER
    elif causal_class and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        family = DECODER
    elif getattr(config, "is_decoder", False) and any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        family = DECODER  # a BERT-like trained as a causal LM and saved as one
    elif not model_type and any(a.endswith("ForCausalLM") for a in architectures):
        family = DECODER  # custom code unknown to transformers' mappings: trust its class name
    else:
        family = ENCODER
    return BaseModel(path, model_type, architectures, family, family == ENCODER and causal_class, config)


def _load_config(path: str):
    from transformers import AutoConfig  # noqa: PLC0415

    folder = Path(path).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise UserError(f"base model folder {path} holds no config.json (not a saved transformers model)")
        try:
            return AutoConfig.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise UserError(f"base model folder {path}: unreadable config: {_first_line(exc)}") from None
    if _looks_like_a_path(path):
        raise UserError(f"base model folder not found: {path}")
    with _hub_quiet():
        try:  # in the local Hugging Face cache: no network needed
            return AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError):
            pass
        reason = _hub_unreachable()
        if reason:
            raise UserError(f"base model {path!r} is neither a folder on disk nor in the Hugging Face cache, and the "
                            f"Hub cannot be reached ({reason}); give a local model folder with --model") from None
        try:
            return AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise UserError(f"base model {path!r} is neither a folder on disk nor a model on the Hugging Face Hub: "
                            f"{_first_line(exc)}") from None


def _looks_like_a_path(path: str) -> bool:
    # a Hub id is `name` or `org/name`; anything else (./x, /x, ~/x, a/b/c, x.bin) can only be a path
    return path.startswith((".", "/", "~")) or path.count("/") > 1 or os.sep != "/" and os.sep in path


def _hub_unreachable() -> str | None:
    """Why the Hub cannot be reached (offline mode, no route to it), or None. Checked before asking it, because
    huggingface_hub retries a failed connection for about 30 seconds, printing a warning each time."""
    from huggingface_hub import constants  # noqa: PLC0415

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        return f"{host}: {exc.strerror or exc}"
    return None


@contextlib.contextmanager
def _hub_quiet():
    """huggingface_hub's and transformers' warnings off while a model id is looked up (the error says it once)."""
    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "transformers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
