"""Causal language modelling: a decoder-only model (`AutoModelForCausalLM`: Qwen, Llama, SmolLM, GPT-2, ...)
fine-tuned on `generation` or `chat` versions, the loss on the answers only.

Each record is rendered with the chat template (`template.py`: the tokenizer's own, or a documented default),
the loss covers each assistant turn and its end-of-turn token (`masking.py`: from the rendered turns' character
offsets), optionally packed without cross-contamination (`packing.py`). Scored by generating an answer to every
test row's last question (left padding, greedy) and comparing it with the row's answer. The run folder loads
with `transformers.pipeline("text-generation", model=RUN_DIR)`: the tokenizer carries the template, the
generation config the end-of-turn token.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pipeline.errors import UserError
from train.config import Config
from train.data import PublishedVersion
from train.models import DECODER, ENCODER_DECODER, BaseModel
from train.runtime import Runtime
from train.tasks.base import CardSection
from train.tasks.causal_lm import masking, packing, template as templates
from train.tasks.causal_lm.template import ChatTemplate
from train.tasks.generative import records
from train.tasks.generative.task import GenerativeTask

MASKING_VERSION = 1  # part of the tokenization cache key: bump when masking.py changes what it returns


class CausalLMTask(GenerativeTask):
    name = "causal_lm"
    kinds = {"generation": records.COLUMNS["generation"], "chat": records.COLUMNS["chat"]}
    decoder_only = True

    def __init__(self, cfg: Config, template: ChatTemplate):
        super().__init__(cfg)
        self.template = template
        self._eot: int | None = None
        self._eot_text: str | None = None

    # -- choosing -----------------------------------------------------------------------------------------------
    @classmethod
    def model_problem(cls, base: BaseModel, *, explicit: bool = False) -> str | None:
        if base.family == DECODER:
            return None
        if base.family == ENCODER_DECODER:
            return (f"{cls.name} trains decoder-only models, and an encoder-decoder takes one input text and gives "
                    "one output, not a conversation's turns: name a decoder-only model with --model (e.g. "
                    "Qwen/Qwen2.5-0.5B-Instruct or a local folder)")
        return (f"{cls.name} trains decoder-only models (AutoModelForCausalLM), and this is an encoder: name one "
                "with --model (e.g. Qwen/Qwen2.5-0.5B-Instruct or a local folder)")

    # -- set-up -------------------------------------------------------------------------------------------------
    @classmethod
    def for_training(cls, cfg: Config, version: PublishedVersion, rows: dict[str, pa.Table]) -> CausalLMTask:
        task = cls(cfg, ChatTemplate("", ""))
        tokenizer = task._tokenizer(cfg.model_path(), cfg.model_label())
        task.template = templates.choose(cfg.chat_template, tokenizer)
        templates.check(tokenizer, task.template, model=cfg.model_label(), system_rows=records.has_system_turn(rows))
        return task

    @classmethod
    def for_scoring(cls, cfg: Config, run_dir: Path, record: dict) -> CausalLMTask:
        task = cls(cfg, ChatTemplate("", ""))
        tokenizer = task._tokenizer(str(run_dir), str(run_dir))
        if not tokenizer.chat_template:
            raise UserError(f"{run_dir}: the tokenizer has no chat template; not a causal_lm run folder")
        task.template = ChatTemplate(record.get("chat_template") or "the run's", tokenizer.chat_template)
        return task

    # -- model --------------------------------------------------------------------------------------------------
    def _tokenizer(self, model_path: str, label: str):
        """The tokenizer, fit for rendering and masking: fast (character offsets), with an end-of-sequence
        token (a BERT-style tokenizer's [SEP] when it has none) and a padding token (the end-of-sequence one
        when it has none: labels mark padding, not the token id)."""
        tokenizer = super().load_tokenizer(model_path)
        if not tokenizer.is_fast:
            raise UserError(f"base model {label}: {type(tokenizer).__name__} is a slow tokenizer; {self.name} needs a "
                            "fast one (its character offsets locate the answers)")
        if tokenizer.eos_token is None:
            if tokenizer.sep_token is None:
                raise UserError(f"base model {label}: the tokenizer has no end-of-sequence token to end answers with")
            tokenizer.eos_token = tokenizer.sep_token
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"  # training batches; generation pads on the left itself
        # a decoder takes no token_type_ids (BERT-style tokenizers make them): pipeline() would pass them on
        tokenizer.model_input_names = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
        return tokenizer

    def load_tokenizer(self, model_path: str):
        tokenizer = self._tokenizer(model_path, model_path)
        tokenizer.chat_template = self.template.text  # saved with the run: pipeline() renders chats the same way
        self._eot = masking.end_of_turn_token(tokenizer, self.template)
        self._eot_text = tokenizer.convert_ids_to_tokens(self._eot) if self._eot is not None else None
        return tokenizer

    def build_model(self, model_path: str):
        import torch  # noqa: PLC0415
        from transformers import AutoModelForCausalLM  # noqa: PLC0415

        try:
            model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)  # fp32 master weights
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load base model {model_path!r}: {exc}".replace("\n", " ")) from None
        model.config.use_cache = False  # no KV cache while training (and packed rows are only found without one)
        if self.cfg.packing:
            packing.check_model_keeps_examples_apart(model, self.cfg.model_label())
        return model

    def load_trained_model(self, run_dir: Path):
        from transformers import AutoModelForCausalLM  # noqa: PLC0415

        return AutoModelForCausalLM.from_pretrained(str(run_dir))

    def collator(self, tokenizer, rt: Runtime):
        if self.cfg.packing:
            return packing.collator()
        from transformers import DataCollatorForSeq2Seq  # noqa: PLC0415

        # pads input_ids and attention_mask with the tokenizer, labels with -100 (padding is never learnt)
        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=masking.IGNORE,
                                      pad_to_multiple_of=8 if rt.device == "cuda" else None)

    def finish_model(self, model, tokenizer) -> None:
        model.config.use_cache = True
        gen = model.generation_config
        gen.eos_token_id = self.eos_token_ids(tokenizer)
        gen.pad_token_id = tokenizer.pad_token_id
        tokenizer.padding_side = "left"  # as saved: batched generation with pipeline() needs it

    def eos_token_ids(self, tokenizer) -> list[int]:
        if self._eot is None and tokenizer.chat_template:
            self._eot = masking.end_of_turn_token(tokenizer, self.template)
        ids = [self._eot, tokenizer.eos_token_id]
        return [i for n, i in enumerate(ids) if i is not None and i not in ids[:n]]

    # -- tokens -------------------------------------------------------------------------------------------------
    def encoding_key(self) -> list:
        return [self.cfg.max_length, self.template.text, MASKING_VERSION]

    def _turns(self, batch: dict[str, list]) -> list[list[dict]]:
        turns = records.conversations(batch)
        if self.template.renders_tool_calls:
            from schemas.chat import hf_messages  # noqa: PLC0415

            turns = [hf_messages(t) for t in turns]
        return turns

    def encode_examples(self, tokenizer, batch: dict[str, list]) -> dict[str, list]:
        return masking.encode(tokenizer, self.template, self._turns(batch), records.tools(batch), self.cfg.max_length)

    def encode_inputs(self, tokenizer, batch: dict[str, list]) -> dict[str, list]:
        ids = [masking.prompt_ids(tokenizer, self.template, records.prompt_turns(turns), row_tools, self.cfg.max_length)
               for turns, row_tools in zip(self._turns(batch), records.tools(batch))]
        return {"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]}

    # -- presenting ---------------------------------------------------------------------------------------------
    def facts(self) -> dict:
        return {"chat_template": self.template.source, "end_of_turn_token": self._eot_text,
                "loss_on": masking.MASKING, "packing": self.cfg.packing}

    def model_card(self, record: dict, metrics: dict) -> CardSection:
        eot = record.get("end_of_turn_token")
        return CardSection(
            pipeline_tag="text-generation",
            summary=f"A decoder-only language model fine-tuned by `sftpipe train` ({self.name}) with the Hugging Face "
            "`Trainer` on the version's conversations, the loss on the answers only.",
            facts=[
                ("task", f"{self.name} (`AutoModelForCausalLM`)"),
                ("chat template", f"{record.get('chat_template')} (saved with the tokenizer; source below)"),
                ("loss on", f"{record.get('loss_on')}; end-of-turn token `{eot}`" if eot else record.get("loss_on")),
                ("packing", "on (position ids restart per example)" if record.get("packing") else "off"),
            ],
            metrics=[
                *self.metrics_lines(metrics),
                "",
                "<details><summary>Chat template</summary>",
                "",
                "```jinja",
                self.template.text,
                "```",
                "",
                "</details>",
            ],
            usage=[
                "```python",
                "from transformers import pipeline",
                'chat = pipeline("text-generation", model="<this folder>")',
                'messages = [{"role": "user", "content": "Give three tips for staying healthy."}]',
                f'print(chat(messages, max_new_tokens={self.cfg.max_new_tokens}, do_sample=False)[0]["generated_text"][-1]["content"])',
                "```",
            ],
        )
