"""`sftpipe export DATASET VERSION --format alpaca|sharegpt|messages`: a published version's splits as JSON
Lines for tools that read files (LLaMA-Factory, Axolotl, OpenAI-style fine-tuning).

Each split becomes `<out>/<split>.jsonl`, one record per line, in the form `sftpipe run` reads back with the
same `record_format` (an export → collect round trip gives the same payloads):

- `alpaca`: `{"instruction", "input": "", "output", "system"?, "history"?}` — a conversation's earlier
  exchanges go to `history`; a conversation with tool turns has no Alpaca form (use sharegpt).
- `sharegpt`: `{"conversations": [{"from", "value"}], "system"?, "tools"?}` with LLaMA-Factory's role tags
  (human, gpt, function_call for an assistant turn followed by tool results, observation for a result).
- `messages`: `{"messages": [{"role", "content"}], "tools"?}` as published (a call is an assistant turn
  holding the call's JSON; `schemas.chat.hf_messages` gives the `tool_calls` form).
`tools` is written as the JSON text the source gave, so it comes back unchanged.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq
import typer

from pipeline.cli.console import console
from pipeline.errors import UserError
from pipeline.store import VersionStore

FORMATS = ("alpaca", "sharegpt", "messages")
SPLITS = ("train", "validation", "test")


def turns_of(row: dict[str, Any]) -> tuple[str | None, list[dict[str, str]], str | None]:
    """(system, turns without the system turn, tools) of a published row of either generative kind."""
    if "messages" in row:
        turns = list(row["messages"])
        system = turns.pop(0)["content"] if turns and turns[0]["role"] == "system" else None
        return system, turns, row.get("tools")
    return row.get("system"), [{"role": "user", "content": row["prompt"]},
                               {"role": "assistant", "content": row["completion"]}], None


def to_alpaca(row: dict[str, Any]) -> dict[str, Any]:
    system, turns, _ = turns_of(row)
    if any(t["role"] == "tool" for t in turns):
        raise ValueError("tool turns")
    pairs = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns), 2)]
    out: dict[str, Any] = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
    if system is not None:
        out["system"] = system
    if len(pairs) > 1:
        out["history"] = [list(p) for p in pairs[:-1]]
    return out


SHAREGPT_TAGS = {"user": "human", "assistant": "gpt", "tool": "observation", "system": "system"}


def to_sharegpt(row: dict[str, Any]) -> dict[str, Any]:
    system, turns, tools = turns_of(row)
    conversation = []
    for i, t in enumerate(turns):
        calls = t["role"] == "assistant" and i + 1 < len(turns) and turns[i + 1]["role"] == "tool"
        conversation.append({"from": "function_call" if calls else SHAREGPT_TAGS[t["role"]], "value": t["content"]})
    out: dict[str, Any] = {"conversations": conversation}
    if system is not None:
        out["system"] = system
    if tools is not None:
        out["tools"] = tools
    return out


def to_messages(row: dict[str, Any]) -> dict[str, Any]:
    system, turns, tools = turns_of(row)
    out: dict[str, Any] = {"messages": ([{"role": "system", "content": system}] if system is not None else []) + turns}
    if tools is not None:
        out["tools"] = tools
    return out


CONVERT = {"alpaca": to_alpaca, "sharegpt": to_sharegpt, "messages": to_messages}


def rows(path: Path) -> Iterator[dict[str, Any]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=2000):
        yield from batch.to_pylist()


def export_version(version_dir: Path, fmt: str, out: Path, splits: tuple[str, ...] = SPLITS) -> dict[str, int]:
    """Write `<out>/<split>.jsonl` for each split; the number of records per split."""
    manifest = json.loads((version_dir / "manifest.json").read_text(encoding="utf-8"))
    kind = manifest.get("kind") or "classification"
    if kind not in ("generation", "chat"):
        raise UserError(f"{version_dir}: a {kind} version; export writes instruction and chat data "
                        "(generation or chat versions)")
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    convert = CONVERT[fmt]
    for split in splits:
        source = version_dir / f"{split}.parquet"
        if not source.exists():
            continue
        n = 0
        tmp = out / f".{split}.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows(source):
                try:
                    record = convert(row)
                except ValueError as exc:
                    tmp.unlink()
                    raise UserError(f"--format {fmt} cannot hold row {row['id']} of {split} ({exc}); "
                                    "use --format sharegpt or messages") from None
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                n += 1
        tmp.replace(out / f"{split}.jsonl")
        counts[split] = n
    return counts


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        dataset: str = typer.Argument(..., help="the dataset name (as in its config's `dataset:`)"),
        version: str = typer.Argument("latest", help="v3, 3, latest or a tag"),
        fmt: str = typer.Option(..., "--format", help="alpaca | sharegpt | messages"),
        out: Path = typer.Option(None, "--out", help="folder for <split>.jsonl (default: exports/<dataset>-<version>-<format>)"),
        split: str = typer.Option(None, "--split", help="one split only (train, validation, test)"),
        data_dir: Path = typer.Option(Path("data"), "--data-dir", help="where versions are (the config's store.data_dir)"),
    ) -> None:
        """Write a generation or chat version as JSON Lines, one file per split: Alpaca, ShareGPT or
        OpenAI-style messages. Reading the files back with the same `record_format` gives the same rows."""
        if fmt not in FORMATS:
            raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
        if split is not None and split not in SPLITS:
            raise UserError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
        store = VersionStore(data_dir)
        name = store.resolve(dataset, version)
        target = out or Path("exports") / f"{dataset}-{name}-{fmt}"
        counts = export_version(store.path(dataset, name), fmt, target, (split,) if split else SPLITS)
        for s, n in counts.items():
            console.print(f"{s}: {n:,} records → {target / f'{s}.jsonl'}", highlight=False)
