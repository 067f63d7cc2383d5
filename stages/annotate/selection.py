"""Which rows need a human (unlabelled, an audit sample, the flagged ones, all), and the small side inputs
(flagged ids, predictions) they are chosen with."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError
from stages.annotate.config import Config


def _rank(seed: int, ids: pd.Series) -> pd.Series:
    """A stable pseudo-random order: a row's rank does not depend on batch order or on other rows."""
    return ids.map(lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def read_table(path: Path) -> pd.DataFrame:
    """A small side input (flagged ids, predictions) by its suffix."""
    if not path.is_file():
        raise UserError(f"annotate: file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path).to_pandas()
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
        if suffix == ".txt":
            return pd.DataFrame({"id": [l.strip() for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]})
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise UserError(f"annotate: cannot read {path}: {exc}".replace("\n", " ")) from None
    raise UserError(f"annotate: {path}: expected .parquet, .csv, .jsonl or .txt")


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def select_rows(rows: pd.DataFrame, cfg: Config, flagged: set[str] | None = None) -> pd.DataFrame:
    """The rows (columns id, text, label) that need a human, in a stable order."""
    has_label = rows["label"].notna() & (rows["label"].astype("string").str.len() > 0)
    if cfg.select == "all":
        chosen = rows
    elif cfg.select == "flagged":
        chosen = rows[rows["id"].isin(flagged or set())]
    elif cfg.select == "label_issues":
        if "label_issue" not in rows.columns:
            raise UserError("annotate: select: label_issues needs the label_noise stage's `label_issue` column "
                            "(label_noise is disabled, or the rows have no labels)")
        chosen = rows[rows["label_issue"].fillna(False).astype(bool)]
    elif cfg.select == "unlabelled":
        chosen = rows[~has_label]
    else:
        pool = rows[has_label].assign(_rank=_rank(cfg.seed, rows.loc[has_label, "id"]))
        k = cfg.sample_size if cfg.sample_size is not None else round(cfg.sample_fraction * len(pool))
        k = min(int(k), len(pool))
        if not cfg.stratify or len(pool) == 0:
            chosen = pool.sort_values("_rank").head(k)
        else:
            sizes = pool.groupby("label").size().sort_index()
            exact = sizes * k / len(pool)
            take = exact.apply(math.floor)
            rest = k - int(take.sum())
            order = (exact - take).sort_values(ascending=False, kind="stable").index[:rest]
            take[order] += 1  # largest remainders, so the strata sum to k exactly
            parts = [g.sort_values("_rank").head(int(take[lab])) for lab, g in pool.groupby("label")]
            chosen = pd.concat(parts) if parts else pool.head(0)
        chosen = chosen.drop(columns="_rank")
    chosen = chosen.drop(columns=[c for c in ("label_issue",) if c in chosen.columns])
    return chosen.sort_values("id", kind="stable").reset_index(drop=True)
