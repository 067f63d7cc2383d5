"""Sequence-to-sequence fine-tuning on `generation` versions: the encoder reads the prompt, the decoder learns
the completion (the loss covers the completion only by construction).

The model is an `AutoModelForSeq2SeqLM` (T5, BART, ...: config.is_encoder_decoder), or an `EncoderDecoderModel`
warm-started from an encoder checkpoint used for both halves ("bert2bert", Rothe et al. 2020): the decoder is
the encoder's weights with causal self-attention and new, randomly initialised cross-attention. That is the
offline default: the bundled all-MiniLM-L6-v2 as encoder and decoder. It is small and weak (22M parameters a
side, a sentence-embedding model never trained to write), meant to make this path run without a download;
name a real model with --model.

A row's input is its prompt, after its system prompt and a blank line where it has one. Chat versions are not
trained here: an encoder-decoder takes one text and gives one, not a conversation's turns (causal_lm does).
transformers 5 removed the `text2text-generation` pipeline, so a run folder is used through
`AutoModelForSeq2SeqLM.from_pretrained(RUN_DIR)` and `generate` (the card shows how).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pyarrow as pa

from pipeline.errors import UserError
from train.config import Config
from train.data import PublishedVersion
from train.models import DECODER, ENCODER, ENCODER_DECODER, BaseModel, base_model
from train.runtime import Runtime
from train.tasks.base import CardSection
from train.tasks.generative import records
from train.tasks.generative.task import IGNORE, GenerativeTask

# EncoderDecoderModel warns on every forward with labels that v4.12 changed how its loss is computed
warnings.filterwarnings("ignore", message="Version v4.12.0 introduces a better way to train encoder-decoder models")


class Seq2SeqTask(GenerativeTask):
    name = "seq2seq"
    kinds = {"generation": records.COLUMNS["generation"]}
    decoder_only = False

    def __init__(self, cfg: Config, warm_start: bool):
        super().__init__(cfg)
        self.warm_start = warm_start  # an EncoderDecoderModel built from an encoder checkpoint

    # -- choosing -----------------------------------------------------------------------------------------------
    @classmethod
    def model_problem(cls, base: BaseModel, *, explicit: bool = False) -> str | None:
        if base.family == ENCODER_DECODER or (base.family == ENCODER and base.warm_startable):
            return None
        if base.family == DECODER:
            return (f"{cls.name} trains encoder-decoder models (T5, BART) or warm-starts one from an encoder (BERT); "
                    "a decoder-only model trains as causal_lm")
        return (f"{cls.name} warm-starts an encoder-decoder only from encoders whose model type also has a decoder "
                f"with cross-attention (BERT, RoBERTa, ...), and {base.model_type!r} has none")

    # -- set-up -------------------------------------------------------------------------------------------------
    @classmethod
    def for_training(cls, cfg: Config, version: PublishedVersion, rows: dict[str, pa.Table]) -> Seq2SeqTask:
        if cfg.packing:
            raise UserError("train.packing applies to causal_lm runs (decoder-only models); seq2seq batches are padded")
        task = cls(cfg, warm_start=base_model(cfg.model_path()).family == ENCODER)
        task._ids(task.load_tokenizer(cfg.model_path()), cfg.model_label())  # one-line error now, not mid-run
        return task

    @classmethod
    def for_scoring(cls, cfg: Config, run_dir: Path, record: dict) -> Seq2SeqTask:
        return cls(cfg, warm_start=bool(record.get("warm_started_from")))

    def _ids(self, tokenizer, label: str) -> tuple[int, int]:
        """(the decoder's start token, the end-of-answer token) of a warm-started model: BERT-style [CLS] / [SEP],
        else the tokenizer's bos / eos."""
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        if self.warm_start and (start is None or end is None or tokenizer.pad_token_id is None):
            raise UserError(f"base model {label}: its tokenizer lacks a start, end or padding token to warm-start a "
                            "decoder with")
        return start, end

    # -- model --------------------------------------------------------------------------------------------------
    def build_model(self, model_path: str):
        import torch  # noqa: PLC0415
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, EncoderDecoderModel  # noqa: PLC0415

        try:
            if not self.warm_start:
                return AutoModelForSeq2SeqLM.from_pretrained(model_path, dtype=torch.float32)
            model = EncoderDecoderModel.from_encoder_decoder_pretrained(model_path, model_path)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load base model {model_path!r}: {exc}".replace("\n", " ")) from None
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        start, end = self._ids(tokenizer, model_path)
        model.config.decoder_start_token_id = start
        model.config.eos_token_id = end
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.vocab_size = model.config.decoder.vocab_size
        return model.float()

    def load_trained_model(self, run_dir: Path):
        from transformers import AutoModelForSeq2SeqLM  # noqa: PLC0415

        return AutoModelForSeq2SeqLM.from_pretrained(str(run_dir))

    def collator(self, tokenizer, rt: Runtime):
        from transformers import DataCollatorForSeq2Seq  # noqa: PLC0415

        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE,
                                      pad_to_multiple_of=8 if rt.device == "cuda" else None)

    def finish_model(self, model, tokenizer) -> None:
        gen = model.generation_config
        for key in ("decoder_start_token_id", "eos_token_id", "pad_token_id"):
            if getattr(model.config, key, None) is not None:
                setattr(gen, key, getattr(model.config, key))

    def eos_token_ids(self, tokenizer) -> list[int] | None:
        return None  # the model's generation config (set by finish_model, saved with the run)

    # -- tokens -------------------------------------------------------------------------------------------------
    def encoding_key(self) -> list:
        return [self.cfg.max_length, self.warm_start]

    @staticmethod
    def _sources(batch: dict[str, list]) -> list[str]:
        systems = batch.get("system") or [None] * len(batch["prompt"])
        return [f"{s}\n\n{p}" if s else p for p, s in zip(batch["prompt"], systems)]

    def encode_inputs(self, tokenizer, batch: dict[str, list]) -> dict[str, list]:
        enc = tokenizer(self._sources(batch), truncation=True, max_length=self.cfg.max_length)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def encode_examples(self, tokenizer, batch: dict[str, list]) -> dict[str, list]:
        out = self.encode_inputs(tokenizer, batch)
        start = self._ids(tokenizer, "")[0] if self.warm_start else None
        labels, cut = [], []
        for ids in tokenizer(text_target=batch["completion"])["input_ids"]:
            if start is not None and ids and ids[0] == start:
                ids = ids[1:]  # the decoder is fed the start token itself (labels shifted right)
            cut.append(len(ids) > self.cfg.max_length)
            labels.append(ids[: self.cfg.max_length])
        out["labels"] = labels
        out["answer_cut"] = cut
        return out

    # -- presenting ---------------------------------------------------------------------------------------------
    def facts(self) -> dict:
        return {"warm_started_from": self.cfg.model_label() if self.warm_start else None,
                "loss_on": "the completion (the decoder's targets)", "input": "system prompt + blank line + prompt"}

    def model_card(self, record: dict, metrics: dict) -> CardSection:
        warm = record.get("warm_started_from")
        model = (f"`EncoderDecoderModel` warm-started from {warm} as encoder and decoder (cross-attention newly "
                 "initialised)" if warm else "`AutoModelForSeq2SeqLM`")
        return CardSection(
            pipeline_tag="text2text-generation",
            summary=f"An encoder-decoder fine-tuned by `sftpipe train` ({self.name}) with the Hugging Face `Trainer` "
            "to write the completion of a prompt.",
            facts=[("task", f"{self.name}: {model}"), ("input", record.get("input")), ("loss on", record.get("loss_on"))],
            metrics=self.metrics_lines(metrics),
            usage=[
                "```python",
                "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer",
                'tokenizer = AutoTokenizer.from_pretrained("<this folder>")',
                'model = AutoModelForSeq2SeqLM.from_pretrained("<this folder>")',
                'inputs = tokenizer("Give three tips for staying healthy.", return_tensors="pt")',
                f"print(tokenizer.decode(model.generate(**inputs, max_new_tokens={self.cfg.max_new_tokens})[0], "
                "skip_special_tokens=True))",
                "```",
                "",
                "(transformers 5 has no `text2text-generation` pipeline; with transformers 4, "
                '`pipeline("text2text-generation", model="<this folder>")` loads it too.)',
            ],
        )
