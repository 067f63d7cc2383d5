"""The decontaminate stage (issue 20, round 2) on real text: Alpaca-style records (data/samples/alpaca_en,
alpaca_zh) and TREC questions (data/samples/trec) as our rows and as evaluation sets, read from files in
every collect format, through the stage and through the real executor, with the quality gate's re-check.

What a row should match is decided independently by benchmarks/decontaminate/truth.py (the same rules
written with Python strings and token tuples, no hashing): the stage must remove exactly the rows it
matches, and the planted ones must be among them.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import schemas
from pipeline.errors import UserError
from pipeline.stage import StageContext
from schemas.kinds import KINDS
from schemas.summaries import DecontaminationSummary, Summaries
from stages.decontaminate import DecontaminateStage

from .conftest import REPO, SAMPLES, TableInput, run_pipeline, write_config

_spec = importlib.util.spec_from_file_location("decontam_truth", REPO / "benchmarks" / "decontaminate" / "truth.py")
truth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(truth)

ALPACA = json.loads((SAMPLES / "alpaca_en" / "alpaca_en_demo.json").read_text(encoding="utf-8"))
ZH = json.loads((SAMPLES / "alpaca_zh" / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
TREC_PATTERN = r"^(?P<label>[A-Z]+):(?P<fine>\S+) (?P<text>.+)$"
ANSWER = "Here is a short answer to the question."


def prompt_of(record: dict) -> str:
    """An Alpaca record's prompt as collect builds it: the instruction and the input, a blank line between."""
    return "\n\n".join(p for p in (record["instruction"], record["input"]) if p and p.strip())


def n_tokens(text: str) -> int:
    return len(truth.analyse(text)[0])


def reference(items: list[str], rows: dict[str, str]) -> dict[str, tuple[int, str, str]]:
    """Row id → (item index, rule, overlap) by the independent reference implementation."""
    ref = truth.Reference(items)
    return {i: m for i, text in rows.items() if (m := ref.match(text)) is not None}


def generation_rows(prompts: list[str], completions: list[str] | None = None) -> pa.Table:
    completions = completions or [ANSWER] * len(prompts)
    return pa.Table.from_pylist(
        [{"id": f"row{k:05d}", "source": "ours", "source_file": "ours.json", "source_line": k + 1, "prompt": p,
          "completion": c, "system": None, "meta": None} for k, (p, c) in enumerate(zip(prompts, completions))],
        schema=KINDS["generation"].schema())


def run_stage(section: dict, rows: pa.Table, folder: Path, kind: str = "generation", batch_size: int = 1000,
              workers: int = 1):
    """The stage on rows in memory: (kept ids, rejected rows as dicts by id, summary, stats)."""
    ctx = StageContext(dataset="t", config_dir=folder, work_dir=folder, batch_size=batch_size, workers=workers,
                       kind=KINDS[kind])
    stage = DecontaminateStage(DecontaminateStage.Config.model_validate(section), ctx)
    kept, rejected = [], []
    for out in stage.run(TableInput(rows, batch_size)):
        if out.kept is not None:
            kept += out.kept.column("id").to_pylist()
        if out.rejected is not None:
            rejected += out.rejected.to_pylist()
    summary = stage.summarize()
    assert len(kept) + len(rejected) == rows.num_rows  # every row kept or rejected, once
    return kept, {r["id"]: {**r, "details": json.loads(r["details"])} for r in rejected}, summary, stage.stats


# -- an evaluation set in every collect format ------------------------------------------------------------

# Items every format can hold: one-line instructions of 13+ words without an input (the text format reads a
# line), and the three of them that our rows copy.
ITEMS = [r for r in ALPACA[:600] if not r["input"] and "\n" not in r["instruction"] and n_tokens(r["instruction"]) >= 13][:40]
PLANTED = (3, 17, 31)


def write_eval_set(folder: Path, fmt: str) -> dict:
    """ITEMS written in one format; returns the eval set's config (paths relative to `folder`)."""
    rows = [{"qid": f"q{k:03d}", "instruction": r["instruction"], "input": r["input"], "output": r["output"]}
            for k, r in enumerate(ITEMS)]
    if fmt == "alpaca json":
        (folder / "eval.json").write_text(json.dumps([{k: r[k] for k in ("instruction", "input", "output")} for r in rows]))
        return {"path": "eval.json", "format": "json", "record_format": "alpaca"}
    if fmt == "sharegpt json":
        (folder / "eval.json").write_text(json.dumps([{"id": r["qid"], "conversations": [
            {"from": "human", "value": r["instruction"]}, {"from": "gpt", "value": r["output"]}]} for r in rows]))
        return {"path": "eval.json", "format": "json", "record_format": "sharegpt", "id_field": "id"}
    if fmt == "messages jsonl":
        (folder / "eval.jsonl").write_text("".join(json.dumps({"qid": r["qid"], "messages": [
            {"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": r["instruction"]},
            {"role": "assistant", "content": r["output"]}]}) + "\n" for r in rows))
        return {"path": "eval.jsonl", "format": "jsonl", "record_format": "messages", "id_field": "qid"}
    if fmt == "jsonl field map":
        (folder / "eval.jsonl").write_text("".join(json.dumps({"qid": r["qid"], "question": r["instruction"],
                                                               "answer": r["output"]}) + "\n" for r in rows))
        return {"path": "eval.jsonl", "format": "jsonl", "text_field": "question", "id_field": "qid"}
    if fmt == "jsonl nested fields":
        (folder / "eval.jsonl").write_text("".join(json.dumps({"doc": {"q": r["instruction"]}, "a": r["output"]}) + "\n"
                                                   for r in rows))
        return {"path": "eval.jsonl", "format": "jsonl", "record_format": "fields",
                "fields": {"prompt": "doc.q", "completion": "a"}}
    if fmt in ("csv", "tsv"):
        with open(folder / f"eval.{fmt}", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter="," if fmt == "csv" else "\t")
            writer.writerow(["qid", "question", "answer"])  # answers hold commas, quotes and new lines
            writer.writerows([r["qid"], r["instruction"], r["output"]] for r in rows)
        return {"path": f"eval.{fmt}", "format": fmt, "text_field": "question", "id_field": "qid"}
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), folder / "eval.parquet")
        return {"path": "eval.parquet", "format": "parquet", "record_format": "alpaca", "id_field": "qid"}
    if fmt == "hf_disk":
        import datasets

        datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(folder / "eval_hf"))
        return {"path": "eval_hf", "format": "hf_disk", "record_format": "alpaca", "id_field": "qid"}
    if fmt == "text with a pattern":
        (folder / "eval.txt").write_text("".join(f"{r['qid']}\t{r['instruction']}\n" for r in rows), encoding="utf-8")
        return {"path": "eval.txt", "format": "text", "pattern": r"^(?P<qid>\S+)\t(?P<text>.+)$", "id_field": "qid"}
    raise ValueError(fmt)


FORMATS = ["alpaca json", "sharegpt json", "messages jsonl", "jsonl field map", "jsonl nested fields", "csv", "tsv",
           "parquet", "hf_disk", "text with a pattern"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_eval_set_in_every_collect_format(tmp_path, fmt):
    eval_set = {"name": "alpaca-eval", **write_eval_set(tmp_path, fmt)}
    originals = [prompt_of(r) for r in ALPACA[600:800]]
    prompts = originals + [ITEMS[k]["instruction"] for k in PLANTED]
    rows = generation_rows(prompts)
    expected = reference([r["instruction"] for r in ITEMS], dict(zip(rows.column("id").to_pylist(), prompts)))
    kept, rejected, summary, _ = run_stage({"eval_sets": [eval_set]}, rows, tmp_path)
    planted = {f"row{len(originals) + k:05d}" for k in range(len(PLANTED))}
    assert planted <= set(rejected) and set(rejected) == set(expected)
    for k, row_id in enumerate(sorted(planted)):
        d = rejected[row_id]["details"]
        assert rejected[row_id]["reason"] == "contaminated" and rejected[row_id]["stage"] == "decontaminate"
        item = PLANTED[k]
        line = item + (2 if fmt in ("csv", "tsv") else 1)  # the header is line 1 of a CSV
        named = f"q{item:03d}" if "id_field" in eval_set else f"{eval_set['path']}:{line}"
        assert (d["eval_set"], d["eval_id"], d["field"], d["match"]) == ("alpaca-eval", named, "prompt", "ngram")
        assert len(d["ngram"].split()) == 13 and d["ngram"] in " ".join(truth.analyse(ITEMS[item]["instruction"])[0])
    (figures,) = summary.eval_sets
    assert figures.items == len(ITEMS) and figures.unreadable == {} and figures.empty == 0
    assert figures.compared_as == {"ngram": len(ITEMS), "whole_item": 0, "whole_row": 0}
    assert figures.rows_removed == len(rejected) and summary.rows_checked == rows.num_rows


def test_unreadable_eval_records_are_counted_and_an_empty_set_is_an_error(tmp_path):
    lines = [json.dumps({"instruction": ITEMS[0]["instruction"], "output": "x"}), "{not json",
             json.dumps({"instruction": "no output"}), json.dumps([1, 2])]
    (tmp_path / "eval.jsonl").write_text("\n".join(lines) + "\n")
    section = {"eval_sets": [{"name": "e", "path": "eval.jsonl", "format": "jsonl", "record_format": "alpaca"}]}
    _, rejected, summary, _ = run_stage(section, generation_rows([ITEMS[0]["instruction"]]), tmp_path)
    assert len(rejected) == 1
    assert summary.eval_sets[0].unreadable == {"invalid_json": 1, "json_not_an_object": 1, "missing_field": 1}
    (tmp_path / "eval.jsonl").write_text("{not json\n")
    with pytest.raises(UserError, match=r"eval set 'e': no item could be read \(invalid_json: 1\)"):
        run_stage(section, generation_rows(["a prompt"]), tmp_path)


def test_config_errors_name_the_key(tmp_path):
    from pipeline.config import load_config

    (tmp_path / "ours.jsonl").write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    (tmp_path / "eval.jsonl").write_text(json.dumps({"question": "q"}) + "\n")
    base = {"dataset": "d", "kind": "generation", "sources": [{"name": "s", "path": "ours.jsonl", "format": "jsonl"}]}

    def load(section):
        return load_config(write_config(tmp_path, {**base, "decontaminate": section}))

    good = {"name": "e", "path": "eval.jsonl", "format": "jsonl", "text_field": "question"}
    load({"eval_sets": [good]})
    with pytest.raises(UserError, match=r"decontaminate.compare: generation records have no field 'text'"):
        load({"eval_sets": [good], "compare": ["text"]})
    with pytest.raises(UserError, match=r"compare: 'completion' is not a field of items read with text_field"):
        load({"eval_sets": [{**good, "compare": ["completion"]}]})
    with pytest.raises(UserError, match=r"decontaminate.eval_sets\[0\] \(e\): text_field 'q' is not a column of .*eval.jsonl"):
        load({"eval_sets": [{**good, "text_field": "q"}]})
    with pytest.raises(UserError, match=r"decontaminate.eval_sets\[0\] \(e\): path 'missing.jsonl' matches no file"):
        load({"eval_sets": [{**good, "path": "missing.jsonl"}]})
    with pytest.raises(UserError, match=r"split_field / split_map keep a source's own splits; an evaluation set has none"):
        load({"eval_sets": [{**good, "split_field": "question"}]})
    with pytest.raises(UserError, match="eval set names must be unique: e"):
        load({"eval_sets": [good, good]})
    with pytest.raises(UserError, match=r"need 1 <= min_ngram \(20\) <= ngram \(13\)"):
        load({"eval_sets": [good], "min_ngram": 20})
    (tmp_path / "inside").mkdir()
    shutil.copy(tmp_path / "ours.jsonl", tmp_path / "inside" / "ours.jsonl")
    base = {**base, "inputs_within": "inside", "sources": [{**base["sources"][0], "path": "inside/ours.jsonl"}]}
    with pytest.raises(UserError, match=r"decontaminate.eval_sets\[0\] \(e\): .*eval.jsonl resolves to .*, outside .*inside"):
        load({"eval_sets": [good]})


# -- what is found and what is not ---------------------------------------------------------------------------


def test_chinese_eval_items_are_found_by_character_ngrams(tmp_path):
    """alpaca_zh instructions as the eval set (Alpaca JSON); Chinese is written without spaces, so whitespace
    words would make a sentence one token: characters are tokens (23-character n-grams, 14-22 whole)."""
    items = ZH[:200]
    (tmp_path / "zh.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    long = next(k for k, r in enumerate(items) if n_tokens(prompt_of(r)) >= 30)
    medium = next(k for k, r in enumerate(items) if 14 <= n_tokens(prompt_of(r)) <= 22)
    chars = truth.analyse(prompt_of(items[long]))[0]
    planted = {
        "inside a Chinese prompt": f"请认真完成下面的任务。{prompt_of(items[long])}谢谢！",
        "inside an English prompt": f"Please answer in Chinese: {prompt_of(items[long])} Thanks.",
        "23 characters, other punctuation": "".join(chars[3:26]) + "。",
        "a medium item whole": f"作业：{prompt_of(items[medium])}字数不限。",
    }
    near_miss = "".join(chars[3:25])  # 22 characters of the item: one short of n = 23
    prompts = [prompt_of(r) for r in ZH[500:700]] + list(planted.values()) + [near_miss]
    rows = generation_rows(prompts)
    ids = rows.column("id").to_pylist()
    section = {"eval_sets": [{"name": "zh", "path": "zh.json", "format": "json", "record_format": "alpaca"}]}
    _, rejected, summary, _ = run_stage(section, rows, tmp_path)
    expected = reference([prompt_of(r) for r in items], dict(zip(ids, prompts)))
    assert set(rejected) == set(expected)
    planted_ids = ids[200:204]
    assert set(planted_ids) <= set(rejected) and ids[204] not in rejected
    by_name = dict(zip(planted, planted_ids))
    assert rejected[by_name["inside a Chinese prompt"]]["details"]["match"] == "ngram"
    assert len(rejected[by_name["inside a Chinese prompt"]]["details"]["ngram"]) == 23  # characters, no spaces
    assert rejected[by_name["inside an English prompt"]]["details"]["eval_id"] == f"zh.json:{long + 1}"
    assert rejected[by_name["a medium item whole"]]["details"]["match"] == "whole_item"
    assert summary.eval_sets[0].compared_as["ngram"] > 0 and summary.eval_sets[0].compared_as["whole_item"] > 0


def test_near_mode_finds_paraphrases_the_ngram_mode_misses(tmp_path):
    items = [r for r in ALPACA[:300] if 20 <= n_tokens(prompt_of(r)) <= 60][:50]
    (tmp_path / "eval.json").write_text(json.dumps(items))

    def paraphrase(text: str) -> str:  # one word in every ten replaced: no 13 words survive in a row
        words = text.split()
        return " ".join("indeed" if k % 10 == 4 else w for k, w in enumerate(words))

    prompts = [prompt_of(r) for r in ALPACA[300:400]] + [paraphrase(prompt_of(items[k])) for k in (2, 9)]
    rows = generation_rows(prompts)
    eval_set = {"name": "e", "path": "eval.json", "format": "json", "record_format": "alpaca"}
    _, by_ngram, _, _ = run_stage({"eval_sets": [eval_set]}, rows, tmp_path)
    _, by_both, summary, _ = run_stage({"eval_sets": [eval_set], "mode": "both"}, rows, tmp_path)
    assert not {"row00100", "row00101"} & set(by_ngram)
    assert {"row00100", "row00101"} <= set(by_both) and set(by_ngram) <= set(by_both)
    d = by_both["row00100"]["details"]
    assert d["match"] == "near" and d["eval_id"] == "eval.json:3" and 0.5 <= d["jaccard"] < 1
    assert d["eval_text"] == prompt_of(items[2])[:300]
    assert summary.mode == "both"


def test_responses_are_compared_when_asked(tmp_path):
    """A training answer that copies an eval set's reference answer: found only when our completions and their
    answers are among the compared fields (the prompts are the default)."""
    items = ALPACA[:100]
    (tmp_path / "eval.json").write_text(json.dumps(items))
    answer = next(k for k, r in enumerate(items) if n_tokens(r["output"]) >= 40)
    prompts = [prompt_of(r) for r in ALPACA[300:350]] + ["Write me something nice about the weather."]
    completions = [r["output"] for r in ALPACA[300:350]] + [items[answer]["output"]]
    rows = generation_rows(prompts, completions)
    eval_set = {"name": "e", "path": "eval.json", "format": "json", "record_format": "alpaca"}
    _, default, _, _ = run_stage({"eval_sets": [eval_set]}, rows, tmp_path)
    _, both, summary, _ = run_stage({"eval_sets": [{**eval_set, "compare": ["user", "completion"]}],
                                     "compare": ["prompt", "completion"]}, rows, tmp_path)
    assert "row00050" not in default and "row00050" in both
    d = both["row00050"]["details"]
    assert (d["field"], d["eval_field"], d["eval_id"]) == ("completion", "completion", f"eval.json:{answer + 1}")
    assert summary.fields == ["prompt", "completion"] and summary.eval_sets[0].fields == ["user", "completion"]


def test_chat_rows_compare_user_turns_not_a_shared_system_prompt(tmp_path):
    """Conversations (glaive_toolcall, ShareGPT) on both sides, every one opened by the same 20-word system
    prompt: by default the user turns are compared, so only the conversations that share a question with an
    eval conversation go; comparing `prompt` (every turn before the last answer, the system turn included)
    flags them all."""
    from pipeline.sources import records
    from pipeline.sources.config import SourceConfig

    glaive = json.loads((SAMPLES / "glaive_toolcall" / "glaive_toolcall_en_demo.json").read_text(encoding="utf-8"))
    system = ("You are a helpful assistant with access to the following functions. Use them if required, and "
              "answer the user briefly.")
    with_system = [{**r, "system": system} for r in glaive]
    (tmp_path / "eval.json").write_text(json.dumps(with_system[:40]))
    asked = [k for k, r in enumerate(glaive[:40]) if n_tokens(r["conversations"][0]["value"]) >= 13][:2]
    planted = [{"conversations": [{"from": "human", "value": glaive[k]["conversations"][0]["value"]},
                                  {"from": "gpt", "value": ANSWER}], "system": system} for k in asked]
    source = SourceConfig(name="ours", path="x", format="json", record_format="sharegpt")
    ours = with_system[100:160] + planted
    rows = []
    for k, record in enumerate(ours):
        error, payload = records.map_record(source, record, "chat")
        assert error is None, error
        rows.append({"id": f"row{k:05d}", "source": "ours", "source_file": "x", "source_line": k + 1, **payload,
                     "meta": None})
    table = pa.Table.from_pylist(rows, schema=KINDS["chat"].schema())
    eval_set = {"name": "glaive-eval", "path": "eval.json", "format": "json", "record_format": "sharegpt"}
    _, rejected, summary, _ = run_stage({"eval_sets": [eval_set]}, table, tmp_path, kind="chat")
    # Glaive repeats template questions ("Hi, I need a new password. Can you generate one for me?"): what the
    # user turns really share with the eval conversations is the reference's to say.
    user = KINDS["chat"].view("user")
    eval_rows = [records.map_record(source, r, "chat")[1] for r in with_system[:40]]
    eval_users = user(pa.RecordBatch.from_pylist(eval_rows, schema=pa.schema(KINDS["chat"].payload))).to_pylist()
    expected = reference(eval_users, dict(zip(table.column("id").to_pylist(), user(table.to_batches()[0]).to_pylist())))
    assert {"row00060", "row00061"} <= set(rejected) and set(rejected) == set(expected) and len(rejected) < len(ours) / 2
    assert summary.fields == ["user"]
    d = rejected["row00060"]["details"]
    assert (d["field"], d["eval_field"], d["eval_id"]) == ("user", "user", f"eval.json:{asked[0] + 1}")
    assert rejected["row00060"]["record"] is not None  # a chat row keeps its whole record in rejected.parquet
    _, everything, _, _ = run_stage({"eval_sets": [{**eval_set, "compare": ["prompt"]}], "compare": ["prompt"]},
                                    table, tmp_path, kind="chat")
    assert len(everything) == len(ours)


def test_a_row_matching_two_sets_is_removed_once_for_the_first_listed(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(ITEMS[:10]))
    (tmp_path / "b.json").write_text(json.dumps(ITEMS[5:20]))
    prompts = [ITEMS[7]["instruction"], ITEMS[15]["instruction"], prompt_of(ALPACA[900])]
    section = {"eval_sets": [{"name": "a", "path": "a.json", "format": "json", "record_format": "alpaca"},
                             {"name": "b", "path": "b.json", "format": "json", "record_format": "alpaca"}]}
    _, rejected, summary, _ = run_stage(section, generation_rows(prompts), tmp_path)
    assert {k: v["details"]["eval_set"] for k, v in rejected.items()} == {"row00000": "a", "row00001": "b"}
    assert [(s.name, s.items, s.rows_removed) for s in summary.eval_sets] == [("a", 10, 1), ("b", 15, 1)]


def test_workers_and_batches_do_not_change_the_result(tmp_path):
    """Several workers (each memory-maps the saved index) and small batches give the same rows, details,
    stats and summary as one process."""
    (tmp_path / "eval.json").write_text(json.dumps(ALPACA[:300]))
    prompts = [prompt_of(r) for r in ALPACA[250:999]]  # 50 of them are eval items
    rows = generation_rows(prompts)
    section = {"eval_sets": [{"name": "e", "path": "eval.json", "format": "json", "record_format": "alpaca"}],
               "mode": "both", "examples": 3}
    one = run_stage(section, rows, tmp_path, batch_size=1000, workers=1)
    two = run_stage(section, rows, tmp_path, batch_size=97, workers=2)
    assert len(one[1]) >= 50
    assert one[0] == two[0] and one[1] == two[1] and one[3] == two[3] and one[2] == two[2]
    assert [e.id for e in one[2].eval_sets[0].examples] == sorted(one[1])[:3]  # the smallest ids


# -- through the executor ------------------------------------------------------------------------------------


def stage_output(result, name: str) -> pa.Table:
    report = next(r for r in result.stages if r.name == name)
    return pq.read_table(report.folder / "part-00000.parquet")


def every_row_once(version: Path, n_in: int) -> set[str]:
    ids = [i for s in schemas.SPLITS for i in pq.read_table(version / f"{s}.parquet", columns=["id"]).column("id").to_pylist()]
    rejected = pq.read_table(version / "rejected.parquet").column("id").to_pylist()
    assert len(ids) == len(set(ids)) and not set(ids) & set(rejected)
    assert len(ids) + len(rejected) == n_in
    return set(ids)


def test_planted_contamination_end_to_end(tmp_path):
    """Alpaca-style records with contamination planted from an eval set of 200 other records: verbatim,
    with case and punctuation changed, embedded in a longer prompt, a medium item whole inside a prompt, a
    short item as the whole prompt; a 12-word near miss and a short item inside a prompt are kept."""
    items = ALPACA[:200]
    (tmp_path / "eval.json").write_text(json.dumps(items))
    item_prompts = [prompt_of(r) for r in items]
    long = [k for k, p in enumerate(item_prompts) if n_tokens(p) >= 20]
    medium = next(k for k, p in enumerate(item_prompts) if 9 <= n_tokens(p) <= 12)
    short = next(k for k, p in enumerate(item_prompts) if 3 <= n_tokens(p) <= 6)
    tokens = truth.analyse(item_prompts[long[4]])[0]
    planted = {  # name → (prompt, the item it comes from, how it must match)
        "verbatim": (item_prompts[long[0]], long[0], "ngram"),
        "case_punct": (item_prompts[long[1]].upper().replace(",", " ;").replace(".", "!!"), long[1], "ngram"),
        "embedded": (f"My teacher gave us this task today. {item_prompts[long[2]]} Please keep it short.", long[2],
                     "ngram"),
        "medium whole inside": (f"Quick question for you: {item_prompts[medium]} Thanks in advance!", medium,
                                "whole_item"),
        "short as the whole row": (item_prompts[short].lower() + "!", short, "whole_row"),
    }
    kept_on_purpose = {
        "12-word near miss": f"Yesterday I read that {' '.join(tokens[2:14])} and I wondered about it.",
        "short inside a longer prompt": f"Before anything else, {item_prompts[short]} and then tell me a joke.",
    }
    records = [{k: r[k] for k in ("instruction", "input", "output")} for r in ALPACA[300:700]]
    records += [{"instruction": p, "input": "", "output": ANSWER} for p, _, _ in planted.values()]
    records += [{"instruction": p, "input": "", "output": ANSWER} for p in kept_on_purpose.values()]
    (tmp_path / "ours.json").write_text(json.dumps(records))
    config = {"dataset": "alpaca-decon", "kind": "generation",
              "sources": [{"name": "ours", "path": "ours.json", "format": "json", "record_format": "alpaca"}],
              "decontaminate": {"eval_sets": [{"name": "alpaca-eval", "path": "eval.json", "format": "json",
                                               "record_format": "alpaca"}]}}
    result = run_pipeline(write_config(tmp_path, config), tmp_path / "data")
    version = tmp_path / "data" / "versions" / "alpaca-decon" / result.version
    assert [s.name for s in result.stages] == ["collect", "clean", "decontaminate", "label_noise", "dedupe", "split"]
    published = every_row_once(version, len(records))

    cleaned = stage_output(result, "clean")
    by_prompt = dict(zip(cleaned.column("prompt").to_pylist(), cleaned.column("id").to_pylist()))
    rejected = pq.read_table(version / "rejected.parquet").to_pylist()
    removed = {r["id"]: json.loads(r["details"]) for r in rejected if r["stage"] == "decontaminate"}
    assert {r["reason"] for r in rejected if r["stage"] == "decontaminate"} == {"contaminated"}
    expected = reference(item_prompts, dict(zip(cleaned.column("id").to_pylist(), cleaned.column("prompt").to_pylist())))
    assert set(removed) == set(expected)
    for name, (prompt, item, how) in planted.items():
        d = removed[by_prompt[prompt]]
        assert (d["eval_set"], d["field"], d["eval_field"], d["match"]) == ("alpaca-eval", "prompt", "user", how), name
        # The planted item, or an earlier one sharing an n-gram with the row (real records quote each other).
        assert int(d["eval_id"].split(":")[1]) <= item + 1 and d["eval_id"].startswith("eval.json:"), name
        assert d["ngram"] in " ".join(truth.analyse(prompt)[0]), name
    for name, prompt in kept_on_purpose.items():
        assert by_prompt[prompt] in published, name

    summary = result.summaries.get(DecontaminationSummary)
    assert summary.rows_removed == len(removed) and summary.eval_sets[0].items == 200
    block = result.manifest["decontamination"]
    assert block["rows_removed"] == len(removed) and block["eval_sets"][0]["files"][0]["path"] == "eval.json"
    card = (version / "README.md").read_text()
    assert f"- decontaminated against: alpaca-eval (200 items, `eval.json`); {len(removed)} rows removed" in card
    gate = result.manifest["evaluation"]["decontamination"]
    assert gate["rechecked"] and gate["contaminated_rows"] == 0 and gate["eval_files_changed"] == []
    report = (version / "report.html").read_text()
    assert "Decontamination against evaluation sets" in report and min(removed) in report


def test_trec_train_against_its_test_split_and_the_gate_rechecks(tmp_path):
    """Classification: the shipped configs/trec_decontaminated.yaml removes the TREC 10 test questions that
    are also training questions. The same rows published without the stage fail the gate's re-check."""
    config = yaml.safe_load((REPO / "configs" / "trec_decontaminated.yaml").read_text())
    for part in (config["sources"][0], config["decontaminate"]["eval_sets"][0]):
        part["path"] = str((REPO / "configs" / part["path"]).resolve())
    config["clean"]["signals"] = []  # language detection is slow and not the point here
    evaluate = {"label_noise": {"enabled": False}}
    with_stage = run_pipeline(write_config(tmp_path, {**config, "evaluate": evaluate}), tmp_path / "data")
    rejected = pq.read_table(tmp_path / "data" / "versions" / config["dataset"] / with_stage.version / "rejected.parquet")
    removed = {r["id"]: (r["text"], json.loads(r["details"])) for r in rejected.to_pylist() if r["reason"] == "contaminated"}
    test_lines = (SAMPLES / "trec" / "TREC_10.label").read_text(encoding="latin-1").splitlines()
    test_questions = [line.split(" ", 1)[1] for line in test_lines]
    cleaned = stage_output(with_stage, "clean")
    expected = reference(test_questions, dict(zip(cleaned.column("id").to_pylist(), cleaned.column("text").to_pylist())))
    assert set(removed) == set(expected) and len(removed) == 11  # "What is viscosity ?", "How far away is the moon ?", ...
    for text, d in removed.values():
        line = int(d["eval_id"].rsplit(":", 1)[1])
        assert truth.analyse(test_questions[line - 1])[0] == truth.analyse(text)[0]  # the item named is the question
        assert d["match"] in ("whole_row", "whole_item")  # TREC questions are short: compared whole
    assert with_stage.manifest["evaluation"]["decontamination"]["contaminated_rows"] == 0

    # Without the section: nothing checked, and the card says so.
    plain = {k: v for k, v in config.items() if k != "decontaminate"}
    (tmp_path / "plain").mkdir()
    without = run_pipeline(write_config(tmp_path / "plain", {**plain, "evaluate": evaluate}), tmp_path / "plain" / "data")
    version = tmp_path / "plain" / "data" / "versions" / config["dataset"] / without.version
    assert "decontamination: not checked against any evaluation set" in (version / "README.md").read_text()
    assert without.manifest["decontamination"] == {"status": "not run", "reason": "no decontaminate section"}
    assert without.manifest["evaluation"]["decontamination"]["ran"] is False

    # The gate on that version, told what the stage checked: the 11 questions are found in the published
    # splits, and the blocking check fails.
    from pipeline.config import load_config
    from stages.evaluate import Config as EvaluateConfig, evaluate_candidate

    candidate = tmp_path / "candidate"
    shutil.copytree(version, candidate)
    for path in candidate.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    candidate.chmod(0o755)
    summaries = Summaries([*without.summaries, with_stage.summaries.get(DecontaminationSummary)])
    dataset_config = load_config(write_config(tmp_path, {**config, "evaluate": evaluate}))
    gate = evaluate_candidate(candidate, EvaluateConfig.model_validate(evaluate), dataset_config,
                              summaries=summaries)
    assert not gate.passed
    (failure,) = [f for f in gate.blocking_failures if f.check == "decontamination"]
    assert failure.column == "contaminated_rows" and failure.observed == 11
    found = gate.summary["decontamination"]
    assert sorted(r["text"] for r in found["remaining"]) == sorted(text for text, _ in removed.values())
    assert "Published rows re-checked after removal: <b>11</b>" in (candidate / "report.html").read_text()


def test_a_changed_eval_file_reruns_the_stage(tmp_path):
    """The eval files' digests are in the stage's fingerprint: an edited benchmark re-runs decontaminate (and
    what follows), a file only touched does not."""
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"q": r["instruction"]}) + "\n" for r in ITEMS[:20]))
    ours = [{"instruction": r["instruction"], "input": "", "output": r["output"]} for r in ITEMS[15:40]]
    (tmp_path / "ours.json").write_text(json.dumps(ours))
    config = write_config(tmp_path, {
        "dataset": "changed", "kind": "generation", "evaluate": {"enabled": False},
        "sources": [{"name": "ours", "path": "ours.json", "format": "json", "record_format": "alpaca"}],
        "decontaminate": {"eval_sets": [{"name": "e", "path": "eval.jsonl", "format": "jsonl", "text_field": "q"}]}})
    first = run_pipeline(config, tmp_path / "data")
    assert first.manifest["decontamination"]["rows_removed"] == 5  # ITEMS[15:20] are in both

    (tmp_path / "eval.jsonl").touch()
    same = run_pipeline(config, tmp_path / "data")
    assert not same.published and same.version == "v1"  # split follows the new parent version: not reused
    assert {s.name: s.cached for s in same.stages} == {"collect": True, "clean": True, "decontaminate": True,
                                                       "label_noise": True, "dedupe": True, "split": False}

    with open(tmp_path / "eval.jsonl", "a") as fh:  # the benchmark gains an item our data holds
        fh.write(json.dumps({"q": ITEMS[30]["instruction"]}) + "\n")
    second = run_pipeline(config, tmp_path / "data")
    cached = {s.name: s.cached for s in second.stages}
    assert cached == {"collect": True, "clean": True, "decontaminate": False, "label_noise": False,
                      "dedupe": False, "split": False}
    assert second.published and second.version == "v2"
    assert second.manifest["decontamination"]["rows_removed"] == 6
    digest = second.manifest["decontamination"]["eval_sets"][0]["files"][0]["sha256"]
    assert digest != first.manifest["decontamination"]["eval_sets"][0]["files"][0]["sha256"]
