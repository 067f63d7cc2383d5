"""Generative fine-tuning and scoring (train/tasks/causal_lm, seq2seq, generative/): the loss mask under real chat
templates, packing without cross-contamination, a tiny decoder overfitting real Alpaca records, the offline
bert2bert default end to end, metrics against the libraries' published examples, and one-line errors.

Real components throughout: the shipped Alpaca sample published by the real pipeline (short records only, so a
CPU trains on them in seconds), real Trainer runs on a tiny budget, real tokenizers (the packaged MiniLM's
WordPiece; a byte-level BPE trained here on the Alpaca texts with the special tokens of ChatML and Llama 3, as
Qwen's and Llama's tokenizers are byte-level BPEs with those tokens — nothing is downloaded). Training runs use
one torch thread: on a shared 2-core machine two threads spin against each other's load (3x slower measured).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from pipeline.errors import UserError
from pipeline.store import file_hashes
from train.config import Config, default_model_path
from train.tasks.causal_lm import masking, packing
from train.tasks.causal_lm.template import DEFAULT_TEMPLATE, ChatTemplate
from train.tasks.generative import metrics as gm
from train.tasks.generative import records

from .conftest import REPO, SAMPLES, run_pipeline, write_config

DATASET = "alpaca-en"

# -- templates, written out (no download) -----------------------------------------------------------------------
# Qwen2.5-Instruct's chat template (ChatML with a default system prompt and tool calls)
QWEN25 = r'''{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
'''

# Meta-Llama-3-8B-Instruct's chat template
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# a Gemma-style template: refuses system turns
NO_SYSTEM = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] + "
    "'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
# a template that silently leaves system turns out
DROPS_SYSTEM = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'] + ': ' + message['content'] "
    "+ '\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)

TEMPLATES = {  # name -> (template, end-of-turn token in the BPE tokenizer)
    "default": (DEFAULT_TEMPLATE, "<|endoftext|>"),
    "qwen2.5 (ChatML)": (QWEN25, "<|im_end|>"),
    "llama-3": (LLAMA3, "<|eot_id|>"),
}

MULTI_TURN = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "And another one, with a reason?"},
    {"role": "assistant", "content": "Green, because grass is green.\nThat is all."},
]


# -- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def short_alpaca(tmp_path_factory) -> Path:
    """The shipped Alpaca sample through the real pipeline (the shipped config, without the slow language
    signals), keeping records of at most 12-word prompts and answers: a data folder holding alpaca-en v1."""
    config = yaml.safe_load((REPO / "configs" / "alpaca_en.yaml").read_text())
    for source in config["sources"]:
        source["path"] = str((REPO / "configs" / source["path"]).resolve())
    config["clean"] = {"signals": [], "filters": {"prompt.n_words": {"max": 12}, "completion.n_words": {"max": 12}}}
    # the length rules remove most of the sample on purpose: the gate's rejected_share would block that
    config["evaluate"] = {"rejected_share": {"stage": None, "reason": None}}
    folder = tmp_path_factory.mktemp("alpaca")
    result = run_pipeline(write_config(folder, config), folder / "data")
    assert result.version == "v1"
    return folder / "data"


def derived_version(source: Path, data_dir: Path, dataset: str = DATASET, **splits: pa.Table | None) -> Path:
    """A copy of a published version under `data_dir` with some split files replaced (test set-ups the pipeline
    would not publish: validation = train to overfit, an empty test split, system prompts added)."""
    src = source / "versions" / DATASET / "v1"
    dst = data_dir / "versions" / dataset / "v1"
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        f.chmod(0o644)  # published files are read-only
    for split, table in splits.items():
        pq.write_table(table, dst / f"{split}.parquet")
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["dataset"] = dataset
    if "files" in manifest:  # the derived files are this version's as published (train refuses edited versions)
        manifest["files"] = file_hashes(dst)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def split_table(data_dir: Path, split: str, dataset: str = DATASET) -> pa.Table:
    return pq.read_table(data_dir / "versions" / dataset / "v1" / f"{split}.parquet")


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_model_path()))


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A byte-level BPE (GPT-2's pre-tokenizer and decoder, as Qwen and Llama 3 use) trained on the Alpaca texts,
    with ChatML's and Llama 3's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    data = json.loads((SAMPLES / "alpaca_en" / "alpaca_en_demo.json").read_text())[:300]
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>",
               "<|end_header_id|>", "<|eot_id|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((r["instruction"] + "\n" + r["output"] for r in data), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   bos_token="<|begin_of_text|>")


def tiny_llama(tokenizer, hidden: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM, set_seed

    set_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
    ))


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory, minilm_tokenizer) -> Path:
    """A decoder-only model built from a config (Llama architecture, random weights, 2.1M parameters) with the
    MiniLM tokenizer, saved as a local base model folder."""
    folder = tmp_path_factory.mktemp("tiny-decoder")
    tiny_llama(minilm_tokenizer).save_pretrained(folder)
    minilm_tokenizer.save_pretrained(folder)
    return folder


def trained_segments(tokenizer, ids: list[int], labels: list[int]) -> list[str]:
    """The decoded runs of consecutive trained tokens (label != -100)."""
    out, run = [], []
    for token, label in zip(ids, labels):
        if label != masking.IGNORE:
            assert label == token  # a trained token's label is the token itself
            run.append(token)
        elif run:
            out.append(tokenizer.decode(run))
            run = []
    if run:
        out.append(tokenizer.decode(run))
    return out


# -- the loss mask ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TEMPLATES))
def test_trained_tokens_decode_to_exactly_the_answers(name, bpe_tokenizer, short_alpaca):
    """Under each template, the tokens the loss covers decode to each assistant answer followed by the
    end-of-turn token, nothing else: for a multi-turn conversation with a system turn and for real Alpaca
    records; everything else (system, user turns, headers, the separator after the end-of-turn token) is -100."""
    text, eot = TEMPLATES[name]
    template = ChatTemplate(name, text)
    train = split_table(short_alpaca, "train").slice(0, 20)
    batch = {c: train[c].to_pylist() for c in records.COLUMNS["generation"]}
    conversations = [MULTI_TURN, *records.conversations(batch)]
    out = masking.encode(bpe_tokenizer, template, conversations, [None] * len(conversations), max_length=4096)
    assert len(out["input_ids"]) == len(conversations) and not any(out["answer_cut"])
    for turns, ids, labels in zip(conversations, out["input_ids"], out["labels"]):
        answers = [t["content"] + eot for t in turns if t["role"] == "assistant"]
        assert trained_segments(bpe_tokenizer, ids, labels) == answers
        # what is not trained is the rest of the rendered conversation
        rendered = bpe_tokenizer.apply_chat_template(turns, chat_template=text, tokenize=False)
        assert bpe_tokenizer.decode(ids) == rendered
    assert masking.end_of_turn_token(bpe_tokenizer, template) == bpe_tokenizer.convert_tokens_to_ids(eot)


def test_tool_calls_are_trained_and_tool_results_are_not(bpe_tokenizer):
    """A chat record with a function call under Qwen's template (rendered through Hugging Face's `tool_calls`):
    the call and the final answer are trained, the tool's result and the tools' schema are not."""
    from train.tasks.causal_lm import CausalLMTask

    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": json.dumps(call)},
        {"role": "tool", "content": '{"temperature": 21}'},
        {"role": "assistant", "content": "It is 21 degrees in Paris."},
    ]
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    task = CausalLMTask(Config(max_length=4096), ChatTemplate("qwen", QWEN25))
    batch = {"messages": [messages], "tools": [json.dumps(tools)]}
    out = task.encode_examples(bpe_tokenizer, batch)
    segments = trained_segments(bpe_tokenizer, out["input_ids"][0], out["labels"][0])
    assert segments == ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
                        "It is 21 degrees in Paris.<|im_end|>"]
    rendered = bpe_tokenizer.decode(out["input_ids"][0])
    assert '"temperature": 21' in rendered and "# Tools" in rendered  # present, and not trained (above)


def test_wordpiece_tokenizer_and_default_template(minilm_tokenizer):
    """The default template with the MiniLM tokenizer (WordPiece: decoding lower-cases and re-spaces, so answers
    compare as the tokenizer decodes them): each answer then [SEP], the tokenizer's stand-in end-of-sequence."""
    from train.tasks.causal_lm import CausalLMTask

    task = CausalLMTask(Config(), ChatTemplate("default", DEFAULT_TEMPLATE))
    tokenizer = task._tokenizer(str(default_model_path()), "minilm")
    out = masking.encode(tokenizer, task.template, [MULTI_TURN], [None], max_length=512)
    expected = [tokenizer.decode(tokenizer(t["content"] + "[SEP]", add_special_tokens=False)["input_ids"])
                for t in MULTI_TURN if t["role"] == "assistant"]
    assert trained_segments(tokenizer, out["input_ids"][0], out["labels"][0]) == expected


def test_max_length_cuts_answers_and_leaves_out_rows_with_none_left(bpe_tokenizer):
    template = ChatTemplate("qwen", QWEN25)
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there, friend."}]
    long_prompt = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "Fine."}]
    full = masking.encode(bpe_tokenizer, template, [short], [None], max_length=4096)
    n = len(full["input_ids"][0])
    cut = masking.encode(bpe_tokenizer, template, [short, long_prompt], [None, None], max_length=n - 2)
    assert len(cut["input_ids"]) == 1  # the long prompt's answer lies beyond the cut: left out
    assert cut["answer_cut"] == [True] and len(cut["input_ids"][0]) == n - 2
    assert cut["labels"][0] == full["labels"][0][: n - 2]


# -- packing -------------------------------------------------------------------------------------------------------
def test_packed_examples_do_not_attend_to_each_other(bpe_tokenizer):
    """Two examples packed into one row by the task's collator give each example's own logits, and the second
    example's first token is not a target of the first; a model whose attention ignores position ids (a BERT
    decoder) is refused in one line."""
    from transformers import BertConfig, BertLMHeadModel

    from train.runtime import resolve_runtime
    from train.tasks.causal_lm import CausalLMTask

    model = tiny_llama(bpe_tokenizer).eval()
    model.config.use_cache = False
    packing.check_model_keeps_examples_apart(model, "tiny llama")  # raises if they mix

    task = CausalLMTask(Config(packing=True), ChatTemplate("qwen", QWEN25))
    out = masking.encode(bpe_tokenizer, task.template, [MULTI_TURN, MULTI_TURN[1:3]], [None, None], max_length=512)
    features = [{"input_ids": i, "labels": lab} for i, lab in zip(out["input_ids"], out["labels"])]
    batch = task.collator(bpe_tokenizer, resolve_runtime(Config(use_cpu=True)))(features)
    first = len(features[0]["input_ids"])
    assert batch["input_ids"].shape == (1, first + len(features[1]["input_ids"]))
    assert batch["position_ids"][0, first] == 0 and batch["labels"][0, first] == masking.IGNORE
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        alone = model(input_ids=torch.tensor([features[1]["input_ids"]])).logits[0]
    assert torch.allclose(packed[first:], alone, atol=1e-4)

    bert = BertLMHeadModel(BertConfig(vocab_size=len(bpe_tokenizer), hidden_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=64, is_decoder=True))
    with pytest.raises(UserError, match="packed examples attend to each other"):
        packing.check_model_keeps_examples_apart(bert, "a BERT decoder")


# -- training and scoring -------------------------------------------------------------------------------------------
OVERFIT = dict(epochs=50, learning_rate=1e-2, warmup_ratio=0.05, weight_decay=0.0, max_length=48, batch_size=8,
               max_new_tokens=48, early_stopping_patience=None, seed=0)
LOSS_BOUND = 0.5  # see test_a_tiny_decoder_overfits_32_alpaca_records


@pytest.fixture(scope="module")
def overfit(tmp_path_factory, short_alpaca, tiny_decoder):
    """The tiny decoder trained through `train_version` on 32 real Alpaca records, validated on the same 32
    (so the checkpoint kept, the best by validation loss, is the most overfit one)."""
    from train.run import train_version

    data = tmp_path_factory.mktemp("overfit")
    first32 = split_table(short_alpaca, "train").slice(0, 32)
    derived_version(short_alpaca, data, train=first32, validation=first32)
    runs = tmp_path_factory.mktemp("runs") / "train"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_version(DATASET, "v1", Config(model=str(tiny_decoder), **OVERFIT), data_dir=data,
                               runs_root=runs)
    finally:
        torch.set_num_threads(threads)
    return result, data, runs


@pytest.mark.slow  # the overfit run: ~1 min on an idle 2-core CPU, ~4 min under load
def test_a_tiny_decoder_overfits_32_alpaca_records(overfit, minilm_tokenizer):
    """The training loss falls below LOSS_BOUND nats per answer token, and greedy generation gives back training
    answers. Why that bound: the untrained model is at ln(30522) = 10.3 nats (uniform over the vocabulary), and a
    model that has learnt which words answers use but not which answer goes with which prompt stays near the
    answers' unigram entropy, about 5-6 nats; 0.5 nats means the model gives each answer token, on average, a
    probability of e^-0.5 = 0.61 — it knows the answers by heart, which only a correct loss mask and correct
    labels allow (a mask shifted by one token, or covering the prompts, keeps the loss far higher on 32 records
    and 48-token windows)."""
    result, data, _ = overfit
    log = json.loads((result.run_dir / "trainer_log.json").read_text())
    losses = [e["loss"] for e in log if "loss" in e]
    assert losses[0] > 9.5 and losses[-1] < LOSS_BOUND, losses
    assert result.task.name == "causal_lm" and result.metrics["rows"]["train"]["scored"] == 32
    assert result.metrics["training"]["train_input_tokens"] > 0
    # scored on the rows it learnt (validation = train): greedy answers reproduce them
    val = result.metrics["validation"]
    assert val["n"] == 32 and val["exact_match"] >= 0.5, val
    preds = pq.read_table(result.run_dir / "test_predictions.parquet")
    assert preds.column_names == ["id", "prompt", "reference", "prediction", "rouge1", "rouge2", "rougeL", "bleu",
                                  "chrf", "exact_match", "token_f1"]
    assert preds["id"].to_pylist() == split_table(data, "test")["id"].to_pylist()


@pytest.mark.slow  # the overfit run: ~1 min on an idle 2-core CPU, ~4 min under load
def test_the_run_loads_with_the_text_generation_pipeline(overfit, minilm_tokenizer):
    """`pipeline("text-generation", model=RUN_DIR)` renders a chat with the saved template, stops at the
    end-of-turn token and answers a training question with its training answer."""
    from transformers import pipeline

    result, data, _ = overfit
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["chat_template"] == "sftpipe default" and run["end_of_turn_token"] == "[SEP]"
    generator = pipeline("text-generation", model=str(result.run_dir), device=-1)
    rows = split_table(data, "train").to_pylist()
    right = 0
    for row in rows[:8]:
        out = generator([{"role": "user", "content": row["prompt"]}], max_new_tokens=48, do_sample=False)
        answer = out[0]["generated_text"][-1]["content"].strip()
        right += answer == minilm_tokenizer.decode(minilm_tokenizer(row["completion"], add_special_tokens=False)["input_ids"])
    assert right >= 4


@pytest.mark.slow  # the overfit run: ~1 min on an idle 2-core CPU, ~4 min under load
def test_score_reproduces_the_runs_figures_and_scores_other_splits(overfit):
    from train.run import score_run

    result, data, runs = overfit
    _, scored = score_run(result.run_dir, "v1", data_dir=data)
    for key in ("rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact_match", "token_f1", "n"):
        assert scored["test"][key] == pytest.approx(result.metrics["test"][key])
    _, on_train = score_run(result.run_dir, "v1", data_dir=data, split="train", max_samples=8)
    assert on_train["train"]["n"] == 8
    index = [json.loads(line) for line in (runs / "index.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in index} == {"train", "score"} and all(r["task"] == "causal_lm" for r in index)
    assert all("rougeL" in r and "token_f1" in r for r in index)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, short_alpaca):
    """The offline default (no model named): bert2bert warm-started from the packaged MiniLM, a few steps."""
    from train.run import train_version

    runs = tmp_path_factory.mktemp("runs") / "train"
    cfg = Config(max_steps=2, max_length=32, batch_size=8, max_train_samples=16, max_eval_samples=4,
                 max_new_tokens=8, early_stopping_patience=None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_version(DATASET, "v1", cfg, data_dir=short_alpaca, runs_root=runs), runs
    finally:
        torch.set_num_threads(threads)


def test_the_offline_default_trains_and_writes_every_file(default_run, short_alpaca):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    result, runs = default_run
    run_dir = result.run_dir
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "metrics.json", "trainer_log.json", "README.md", "run.json",
                 "test_predictions.parquet"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.parent.glob(".*.partial")) and not (run_dir / "checkpoints").exists()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["task"] == "seq2seq" and "all-MiniLM-L6-v2" in run["warm_started_from"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact_match", "token_f1", "n"}
    assert metrics["test"]["n"] == 4 and metrics["training"]["global_steps"] == 2
    manifest = json.loads((short_alpaca / "versions" / DATASET / "v1" / "manifest.json").read_text())
    card = (run_dir / "README.md").read_text()
    for needle in ("pipeline_tag: text2text-generation", "EncoderDecoderModel", "all-MiniLM-L6-v2",
                   manifest["content_fingerprint"], "CPU", "ROUGE-L", "learning_rate", "AutoModelForSeq2SeqLM",
                   "| max_new_tokens | `8` |"):
        assert needle in card, needle
    # sample generations a person can read: the first test rows with prompt, reference and the generated answer
    assert "## Sample generations" in card and "### 1. `" + first_prediction_id(run_dir) + "`" in card
    assert first_test_prompt_head(short_alpaca) in card
    # the hyper-parameter table lists what this task reads, not a classifier's or a causal LM's settings
    for absent in ("label_separator", "class_weights", "problem_type", "chat_template", "packing"):
        assert f"| {absent} |" not in card, absent
    preds = pq.read_table(run_dir / "test_predictions.parquet")
    test = split_table(short_alpaca, "test").slice(0, 4)
    assert preds["id"].to_pylist() == test["id"].to_pylist()
    assert preds["reference"].to_pylist() == test["completion"].to_pylist()
    assert preds["prompt"].to_pylist() == test["prompt"].to_pylist()
    # loads back as a seq2seq model and answers (transformers 5 has no text2text-generation pipeline)
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(run_dir)
    inputs = tokenizer([test["prompt"][0].as_py()], return_tensors="pt")
    generated = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=8,
                               do_sample=False)
    answer = tokenizer.decode(generated[0], skip_special_tokens=True).strip()
    assert answer == preds["prediction"][0].as_py()


# -- metrics ----------------------------------------------------------------------------------------------------
def first_prediction_id(run_dir: Path) -> str:
    return pq.read_table(run_dir / "test_predictions.parquet")["id"][0].as_py()


def first_test_prompt_head(data_dir: Path) -> str:
    return split_table(data_dir, "test")["prompt"][0].as_py()[:200]


def test_card_samples_show_texts_as_written_whatever_they_hold():
    """An answer's own code fence cannot close the block it is shown in; long texts are cut with a count; an
    empty answer says so; a card shows at most CARD_SAMPLES rows."""
    from train.tasks.generative.task import CARD_SAMPLE_CHARS, CARD_SAMPLES
    from train.tasks.seq2seq.task import Seq2SeqTask

    answer = "Use:\n```python\nprint('hi')\n```\nand `x`."
    rows = [{"id": f"r{i}", "prompt": "Q?", "reference": answer, "prediction": "", "rougeL": 0.5, "token_f1": 0.25}
            for i in range(CARD_SAMPLES + 2)]
    rows[1]["prompt"] = "x" * (CARD_SAMPLE_CHARS + 50)
    lines = Seq2SeqTask(Config(), warm_start=False).card_samples(pa.Table.from_pylist(rows))
    text = "\n".join(lines)
    assert lines[0] == "## Sample generations"
    assert text.count("### ") == CARD_SAMPLES and "### 1. `r0` — ROUGE-L 0.50, token-F1 0.25" in text
    assert "````text\n" + answer + "\n````" in text  # a four-backtick fence around the three-backtick one
    assert "x" * CARD_SAMPLE_CHARS + " … (50 more characters)" in text and "x" * (CARD_SAMPLE_CHARS + 1) not in text
    assert "*(empty)*" in text
    assert Seq2SeqTask(Config(), warm_start=False).card_samples(pa.Table.from_pylist(rows[:0], schema=
                                                                pa.Table.from_pylist(rows).schema)) == []


def test_bleu_and_chrf_match_sacrebleus_published_example():
    """sacrebleu's README: BLEU = 48.53 and chrF2 = 59.73 for this system output and two reference sets; 29.44
    when the first reference of the first sentence is missing."""
    refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
    system = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    per_row_refs = [list(r) for r in zip(*refs)]
    m = gm.corpus(system, per_row_refs)
    assert round(m["bleu"] * 100, 2) == 48.53 and round(m["chrf"] * 100, 2) == 59.73
    missing_first = [per_row_refs[0][1:], *per_row_refs[1:]]
    assert round(gm.corpus(system, missing_first)["bleu"] * 100, 2) == 29.44


def test_rouge_matches_rouge_scores_own_examples():
    """rouge-score's tests: "testing one" against "testing one two" gives ROUGE-1 F 4/5, ROUGE-2 F 2/3,
    ROUGE-L F 4/5; "text first" against ["first text", "first something"] ROUGE-1 1, ROUGE-2 0, ROUGE-L 0.5."""
    row = gm.per_row(["testing one"], ["testing one two"])
    assert row["rouge1"][0] == pytest.approx(4 / 5) and row["rouge2"][0] == pytest.approx(2 / 3)
    assert row["rougeL"][0] == pytest.approx(4 / 5)
    multi = gm.per_row(["text first"], [["first text", "first something"]])
    assert (multi["rouge1"][0], multi["rouge2"][0], multi["rougeL"][0]) == pytest.approx((1.0, 0.0, 0.5))


@pytest.mark.parametrize("prediction, reference, em, f1", [
    ("The Eiffel Tower", "eiffel tower", True, 1.0),               # case and an article
    ("Paris!", "paris", True, 1.0),                                 # punctuation
    ("  an   apple ", "apple", True, 1.0),                          # white space and an article
    ("the cat sat on the mat", "a cat sat", False, 2 * (2 / 4) * (2 / 2) / (2 / 4 + 2 / 2)),  # P 2/4, R 2/2
    ("blue", "green", False, 0.0),
    ("the", "a", True, 0.0),                                        # both normalize to nothing: EM yes, F1 0
    ("New York-based", "new yorkbased", True, 1.0),                 # a hyphen is removed, not spaced
])
def test_exact_match_and_token_f1_with_squad_normalization(prediction, reference, em, f1):
    assert gm.exact_match(prediction, reference) is em
    assert gm.token_f1(prediction, reference) == pytest.approx(f1)


def test_corpus_figures_are_means_of_rows_and_best_of_references():
    m = gm.corpus(["Paris", "blue sky", ""], [["paris", "Lyon"], "green sky", "nothing"])
    assert m["exact_match"] == pytest.approx(1 / 3) and m["n"] == 3 and m["empty_predictions"] == 1
    assert m["token_f1"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)


# -- choosing the task, and errors -----------------------------------------------------------------------------------
def classification_version(data_dir: Path) -> None:
    from .test_train import build_version

    build_version(data_dir, "sms-spam", "v1", n_rows=60)


def test_a_classification_version_on_a_generative_model_and_the_reverse(tmp_path, tiny_decoder, short_alpaca):
    from train.run import train_version

    classification_version(tmp_path / "data")
    with pytest.raises(UserError, match=r"cannot train a 'classification' version: classification trains a "
                                        r"sequence classifier.*generative model.*train.task: classification"):
        train_version("sms-spam", "v1", Config(model=str(tiny_decoder)), data_dir=tmp_path / "data",
                      runs_root=tmp_path / "runs")
    with pytest.raises(UserError, match="a 'generation' version, but this is a classification model"):
        train_version(DATASET, "v1", Config(task="classification"), data_dir=short_alpaca, runs_root=tmp_path / "runs")
    with pytest.raises(UserError, match="a 'classification' version, but this is a causal_lm model"):
        train_version("sms-spam", "v1", Config(task="causal_lm", model=str(tiny_decoder)), data_dir=tmp_path / "data",
                      runs_root=tmp_path / "runs")
    with pytest.raises(UserError, match=r"unknown training task 'lora'"):
        train_version(DATASET, "v1", Config(task="lora"), data_dir=short_alpaca, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.slow  # the overfit run: ~1 min on an idle 2-core CPU, ~4 min under load
def test_a_generative_run_does_not_score_a_classification_version(overfit, tmp_path):
    from train.run import score_run

    result, _, _ = overfit
    classification_version(tmp_path / "data")
    with pytest.raises(UserError, match="a 'classification' version, but this is a causal_lm model"):
        score_run(result.run_dir, "v1", dataset="sms-spam", data_dir=tmp_path / "data")


def test_which_task_a_base_model_gets(tmp_path, tiny_decoder, short_alpaca):
    """auto: a decoder-only model trains generation versions as causal_lm, an encoder (the default) as seq2seq
    (warm-started), an encoder-decoder as seq2seq; a chat version on an encoder-decoder is refused in one line."""
    from transformers import T5Config

    from train.data import open_version
    from train.tasks import task_for_version

    version = open_version(short_alpaca, DATASET, "v1")
    assert task_for_version(version, Config(model=str(tiny_decoder))).name == "causal_lm"
    assert task_for_version(version, Config()).name == "seq2seq"
    t5 = tmp_path / "t5"
    T5Config(vocab_size=128, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2).save_pretrained(t5)
    assert task_for_version(version, Config(model=str(t5))).name == "seq2seq"

    chat_dir = tmp_path / "chat"
    chat = pa.table({"id": ["a", "b"], "messages": pa.array([[{"role": "user", "content": "Hi"},
                                                               {"role": "assistant", "content": "Hello"}]] * 2,
                                                             pa.list_(pa.struct([("role", pa.string()),
                                                                                 ("content", pa.string())]))),
                     "tools": pa.array([None, None], pa.string())})
    vdir = derived_version(short_alpaca, chat_dir, "chats", train=chat, validation=chat, test=chat)
    manifest = json.loads((vdir / "manifest.json").read_text())
    manifest["kind"] = "chat"
    (vdir / "manifest.json").write_text(json.dumps(manifest))
    chats = open_version(chat_dir, "chats", "v1")
    assert task_for_version(chats, Config(model=str(tiny_decoder))).name == "causal_lm"
    with pytest.raises(UserError, match=r"cannot train a 'chat' version: causal_lm trains decoder-only models, and an "
                                        r"encoder-decoder takes one input text and gives one output"):
        task_for_version(chats, Config(model=str(t5)))
    with pytest.raises(UserError, match=r"encoder-only, BertModel\) cannot train a 'chat' version"):
        task_for_version(chats, Config())


def test_a_model_neither_on_disk_nor_reachable_is_one_line(short_alpaca, tmp_path):
    from train.run import train_version

    with pytest.raises(UserError, match=r"base model 'no-such-org/no-such-model' is neither a folder on disk nor"):
        train_version(DATASET, "v1", Config(model="no-such-org/no-such-model"), data_dir=short_alpaca,
                      runs_root=tmp_path / "runs")
    with pytest.raises(UserError, match="base model folder not found: ./missing/model"):
        train_version(DATASET, "v1", Config(model="./missing/model"), data_dir=short_alpaca, runs_root=tmp_path / "runs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no config.json"):
        train_version(DATASET, "v1", Config(model=str(tmp_path / "empty")), data_dir=short_alpaca,
                      runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_template_that_cannot_render_a_system_turn_is_one_line(tmp_path, short_alpaca, tiny_decoder):
    """Rows with a system prompt and a template that raises on system turns, or silently drops them: refused
    before anything is written, naming the template and how many rows have one; without system prompts the
    same template trains."""
    from train.run import train_version
    from train.tasks.causal_lm import CausalLMTask
    from train.data import open_version

    train = split_table(short_alpaca, "train")
    systems = pa.array(["Answer briefly."] * 3 + [None] * (train.num_rows - 3), pa.string())
    derived_version(short_alpaca, tmp_path / "data", train=train.set_column(train.schema.get_field_index("system"),
                                                                            "system", systems))
    for template, says in ((NO_SYSTEM, r"cannot render a system turn \(System role not supported\), and 3 rows"),
                           (DROPS_SYSTEM, "drops system turns, and 3 rows have a system prompt")):
        with pytest.raises(UserError, match=says):
            train_version(DATASET, "v1", Config(model=str(tiny_decoder), chat_template=template),
                          data_dir=tmp_path / "data", runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    version = open_version(short_alpaca, DATASET, "v1")
    rows = {s: records.usable_rows(version.read_split(s, records.COLUMNS["generation"]), Path(s))[0]
            for s in ("train", "validation", "test")}
    task = CausalLMTask.for_training(Config(model=str(tiny_decoder), chat_template=NO_SYSTEM), version, rows)
    assert task.template.source == "train.chat_template"


@pytest.mark.slow  # the overfit run: ~1 min on an idle 2-core CPU, ~4 min under load
def test_an_empty_test_split_is_one_line(tmp_path, short_alpaca, overfit):
    from train.run import score_run, train_version

    empty = split_table(short_alpaca, "test").slice(0, 0)
    derived_version(short_alpaca, tmp_path / "data", test=empty)
    with pytest.raises(UserError, match="the test split has no rows with an answer; cannot train and score"):
        train_version(DATASET, "v1", Config(), data_dir=tmp_path / "data", runs_root=tmp_path / "runs")
    with pytest.raises(UserError, match="the test split has no rows with an answer to score"):
        score_run(overfit[0].run_dir, "v1", data_dir=tmp_path / "data")


def test_packing_is_for_decoder_only_models(tmp_path, short_alpaca):
    from train.run import train_version

    with pytest.raises(UserError, match="train.packing applies to causal_lm runs"):
        train_version(DATASET, "v1", Config(packing=True), data_dir=short_alpaca, runs_root=tmp_path / "runs")


# -- the CLI -----------------------------------------------------------------------------------------------------
def test_cli_trains_with_packing_and_runs_list_shows_generative_runs_beside_classifiers(
        tmp_path, short_alpaca, tiny_decoder, one_thread):
    """`sftpipe train` on the Alpaca version with a decoder and --packing prints the generative headline;
    `runs list` shows it beside a classifier run, each with its own task's figures; `score` prints a table."""
    import typer
    from typer.testing import CliRunner

    from train.cli import register
    from train.run import train_version

    from .test_train import TINY

    runs = tmp_path / "runs"
    classification_version(tmp_path / "data")
    train_version("sms-spam", "v1", Config(**TINY), data_dir=tmp_path / "data", runs_root=runs)

    app = typer.Typer()
    register(app)
    config = tmp_path / "alpaca.yaml"
    config.write_text(f"dataset: {DATASET}\nkind: generation\nsources:\n  - name: a\n    path: nowhere.json\n"
                      "    format: json\n    record_format: alpaca\ntrain:\n  max_steps: 2\n  max_length: 48\n"
                      "  max_new_tokens: 4\n  max_eval_samples: 4\n  early_stopping_patience: null\n")
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(config), "--version", "v1", "--data-dir", str(short_alpaca),
                                  "--runs-dir", str(runs), "--model", str(tiny_decoder), "--packing"])
    assert trained.exit_code == 0, trained.output + repr(trained.exception)
    assert "ROUGE-L" in trained.output and "token-F1" in trained.output
    run_dir = next((runs / DATASET / "v1").iterdir())
    assert json.loads((run_dir / "run.json").read_text())["packing"] is True

    listed = runner.invoke(app, ["runs", "list", "--runs-dir", str(runs)], terminal_width=250, env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    header = next(line for line in listed.output.splitlines() if "run" in line and "task" in line)
    for column in ("task", "accuracy", "macro-F1", "ROUGE-L", "BLEU", "chrF", "EM", "token-F1"):
        assert column in header, column
    lines = listed.output.splitlines()
    assert any("causal_lm" in line for line in lines) and any("classification" in line for line in lines)

    scored = runner.invoke(app, ["score", str(run_dir), "--version", "v1", "--data-dir", str(short_alpaca),
                                 "--max-samples", "3"], terminal_width=200)
    assert scored.exit_code == 0, scored.output + repr(scored.exception)
    assert "ROUGE-L" in scored.output and "(3 rows)" in scored.output and "ROUGE-2" in scored.output
