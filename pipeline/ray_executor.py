"""The Ray executor: the local executor's plan, fingerprints, store and gate, with row-wise stages on Ray.

    sftpipe run configs/big.yaml --executor ray                      # a local Ray on this machine
    sftpipe run configs/big.yaml --executor ray --ray-address auto   # an existing Ray cluster

`RayExecutor` is a `LocalExecutor` that replaces one thing: where a row-wise stage's output stream comes
from. Everything else is inherited unchanged — the plan, fingerprints (so a stage output written by
either executor is reused by the other), the temp-folder-then-rename write of each stage's output
(`part-00000.parquet`, `rejected.parquet`, `stats.json`), accounting, the candidate, the quality gate and
the publish step. A run's content fingerprint on Ray therefore equals the local run's.

How a row-wise stage runs (clean; a source stage with several parts, such as collect with several sources):

- The input is cut into *chunks*: runs of consecutive Parquet row groups of the upstream stage's output
  of about `batch_size` rows (a source stage: one chunk per part, `Stage.parts()` — collect's are its
  sources, since ids count repeated texts across all the files of a source). The chunk list is a Ray Dataset (`ray.data.from_items`, one chunk per block).
- `Dataset.map_batches(_StageWorker, compute=ActorPoolStrategy(size=n))` runs the very same stage class
  in a pool of actors: the stage is constructed once per actor (expensive set-up such as langdetect's
  profiles happens once per actor, not per batch). An actor reads its chunk itself (shared storage: a
  path every node sees), calls `stage.run` on it and returns one small table: a row per `StageOutput`
  part, `kind` = kept | rejected | stats | error, with the Arrow batch as IPC bytes in `payload`. The
  batches keep their exact schema, so the driver's writers check and write exactly what the local
  executor would have written. Signals registered outside the project (a user's module, a notebook)
  travel to the actors by value (`pipeline.filters.portable_registry`).
- `DataContext.execution_options.preserve_order = True`: the driver receives the parts in input order
  and writes them in that order, so dedupe's "first seen" priority sees the same stream as locally.
- Per-chunk `stage.stats` are summed (numbers add, dicts merge): a row-wise stage's stats must be
  additive over rows, as clean's are (rows changed per normalizer, PII masked).

Why the actors read their own chunks instead of `ray.data.read_parquet`: the upstream output is one
Parquet file, which Ray Data reads in one task; and its ListFiles/ReadFiles tasks need a CPU that a full
actor pool (`size` = all CPUs) already holds — on 2 CPUs that deadlocked (Ray 2.60). Reading row groups
in the actors keeps all CPUs on the stage, balances work at row-group granularity, and on a cluster
spreads reads over the nodes instead of the driver.

Whole-stream stages (dedupe, annotate, split) run on the driver over the Parquet input, as locally, but
dedupe's near-duplicate search — all of its heavy work — runs on the cluster (`RayNearDuplicates`, which
the executor hands to the stage through `StageContext.near_duplicates`; the stage code is the same):

1. Pass 1 (normalize, shingle, MinHash, band keys) in an actor pool over the same row-group chunks. Each
   actor spills its chunk's shingle sets and band keys to a folder under the stage's output folder (shared
   storage) and returns 4 numbers per row; the driver keeps ~32 B/row (exact hash, length, set offset).
2. Band keys of the rows in play (one per exact-duplicate group) become (band, key, row) rows, grouped by
   hash of (band, key) with `groupby(...).map_groups` — a sort-based shuffle — so every LSH bucket lands
   whole in one group, which emits *all* pairs of each bucket, exactly as the local search does (chained
   edges would be linear but could miss a pair whose chain link fails verification; all pairs keep the
   results equal to the local executor's, and LSH buckets stay small: 180 rows at most at 1M here).
3. Pair codes are grouped again by their own hash, so the bands' copies of a pair meet in one group, are
   dropped, and the pair is verified there by exact Jaccard against the spilled sets.
4. Only verified edges (16 B each) and counts reach the driver, which sorts them and makes the same
   greedy keep / cluster decisions as locally, then writes the stage's output in one pass over the input.

Driver limits after this: per-row arrays (exact hash, length, rank, representative, cluster: ~60 B/row,
6 GB at 100M rows) and the verified edges (~50 B each with scipy's connected components: a 64 GB driver
takes ~1e9 edges; the planted corpus has ~0.8 per row). Beyond that, components would run distributed
(min-label propagation by repeated joins). What the driver still does for every stage: it writes the single
`part-00000.parquet` (zstd) and `rejected.parquet` — the first bottleneck at scale; see
benchmarks/ray/README.md for measured costs and a projection.

Ray is an optional extra (`pip install -e ".[ray]"`): this module imports it only when a run starts.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError
from pipeline.executor import LocalExecutor
from pipeline.filters import portable_registry, register_portable
from pipeline.minhash import distinct, mix64, shared_key_pairs
from pipeline.near_duplicates import SketchParams, sketch_batch, verify_pairs
from pipeline.stage import Stage, StageContext, StageOutput
from pipeline.stage_io import ParquetInput

RAY_INSTALL_HINT = 'the Ray executor needs Ray: pip install -e ".[ray]" (or pip install "ray[data]>=2.9")'


def import_ray():
    """Import ray and ray.data, or say how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise UserError(f"{RAY_INSTALL_HINT} ({exc})") from None
    return ray


class RayExecutor(LocalExecutor):
    """Runs row-wise stages as Ray Data `map_batches` over an actor pool; everything else as LocalExecutor.

    `ray_address`: None starts a local Ray with `workers` CPUs (all cores by default) and stops it after the
    run; "auto" or "ray://host:port" joins an existing cluster. If Ray is already initialized in this
    process (a test fixture, a notebook), that instance is used and left running.
    """

    def __init__(self, config, *, ray_address: str | None = None, actors: int | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.ray_address = ray_address
        self.actors = actors  # actor pool size per row-wise stage; default: the cluster's CPUs
        self._ray = import_ray()

    def run(self, tag: str | None = None):
        ray = self._ray
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
            if self.ray_address is None:
                kwargs["num_cpus"] = self.workers
            ray.init(address=self.ray_address, **kwargs)
            started = True
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # not "progress bars disabled"
        try:
            return super().run(tag)
        finally:
            if started:
                ray.shutdown()

    # -- the one seam: where a stage's outputs come from -------------------------------------------------

    def _outputs(self, stage: Stage, inputs: ParquetInput | None) -> Iterator[StageOutput]:
        chunks = self._chunks(stage, inputs)
        if chunks is None:
            # A whole-stream stage runs on the driver; its near-duplicate search (dedupe) on the cluster.
            stage.ctx.near_duplicates = functools.partial(RayNearDuplicates, ray=self._ray, actors=self.actors,
                                                          batch_size=self.batch_size, shared_dir=stage.ctx.work_dir,
                                                          log=self.log)
            self.log(f"{stage.name}: on the driver")
            return stage.run(inputs)
        self.log(f"{stage.name}: on Ray, {len(chunks)} chunk(s)")
        return self._ray_outputs(stage, chunks)

    def _chunks(self, stage: Stage, inputs: ParquetInput | None) -> list[dict] | None:
        """The work items of a row-wise stage, or None where the stage runs on the driver."""
        if stage.whole_stream:
            return None
        if inputs is None:  # a source stage: one chunk per independent part, if it has several
            parts = stage.parts()
            if parts < 2:
                return None
            return [{"source": i, "file": "", "row_groups": [], "start": 0} for i in range(parts)]
        if inputs.num_rows == 0:  # nothing to spread; the local path also gives the stage's empty-run stats
            return None
        return row_group_chunks(inputs.files, self.batch_size)

    def _ray_outputs(self, stage: Stage, chunks: list[dict]) -> Iterator[StageOutput]:
        ray = self._ray
        configure_data_context(ray)
        size = min(self.actors or cluster_cpus(ray), len(chunks))
        ctx = stage.ctx
        ctx_args = {"dataset": ctx.dataset, "config_dir": ctx.config_dir, "work_dir": ctx.work_dir,
                    "batch_size": ctx.batch_size, "workers": 1, "labels": ctx.labels, "kind": ctx.kind}
        ds = chunk_dataset(ray, chunks).map_batches(
            _StageWorker,
            fn_constructor_kwargs={"cls": type(stage), "section": stage.config, "ctx_args": ctx_args,
                                   "signals": portable_registry()},
            batch_size=1,  # one chunk per call: chunks are already about batch_size rows
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=1,
        )
        for block in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
            for kind, payload in zip(block.column("kind").to_pylist(), block.column("payload").to_pylist()):
                if kind == "error":
                    raise UserError(payload.decode("utf-8"))
                if kind == "stats":
                    merge_stats(stage.stats, json.loads(payload))
                    continue
                batch = from_ipc(payload)
                ctx.progress(batch.num_rows)
                yield StageOutput(kept=batch) if kind == "kept" else StageOutput(rejected=batch)


class _StageWorker:
    """A Ray Data actor: builds the stage once, then runs it on each chunk it is given."""

    def __init__(self, cls: type[Stage], section, ctx_args: dict, signals: bytes):
        register_portable(signals)
        self.ctx_args = ctx_args
        self.stage = cls(section, StageContext(**ctx_args))
        self.parts: dict[int, Stage] = {}

    def _stage_for(self, part: int) -> Stage:
        if part < 0:
            return self.stage
        if part not in self.parts:  # a source stage's part (collect: one source; ids count per source)
            self.parts[part] = self.stage.part(part)
        return self.parts[part]

    def __call__(self, table: pa.Table) -> pa.Table:
        kinds: list[str] = []
        payloads: list[bytes] = []
        for source, file, row_groups in zip(table.column("source").to_pylist(), table.column("file").to_pylist(),
                                            table.column("row_groups").to_pylist()):
            try:
                stage = self._stage_for(source)
                stage.stats = {}
                inputs = None if source >= 0 else _ChunkInput(file, row_groups, self.ctx_args["batch_size"])
                for out in stage.run(inputs):
                    for kind, batch in (("kept", out.kept), ("rejected", out.rejected)):
                        if batch is not None and batch.num_rows:
                            kinds.append(kind)
                            payloads.append(to_ipc(batch))
                kinds.append("stats")
                payloads.append(json.dumps(stage.stats, default=str).encode())
            except UserError as exc:  # a user's mistake (an unreadable file): one line on the driver, as locally
                kinds.append("error")
                payloads.append(str(exc).encode("utf-8"))
        return pa.table({"kind": pa.array(kinds, pa.string()), "payload": pa.array(payloads, pa.large_binary())})


class _ChunkInput:
    """A stage input over some row groups of one Parquet file (what an actor reads for one chunk)."""

    def __init__(self, file: str, row_groups: list[int], batch_size: int):
        self.file, self.row_groups, self.batch_size = file, row_groups, batch_size
        meta = pq.ParquetFile(file).metadata
        self.num_rows = sum(meta.row_group(g).num_rows for g in row_groups)

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        yield from pq.ParquetFile(self.file).iter_batches(batch_size=self.batch_size, row_groups=self.row_groups,
                                                          columns=columns)


class RayNearDuplicates:
    """The dedupe stage's near-duplicate search on the cluster: `LocalNearDuplicates`'s interface and results.

    `sketch`: the input's row-group chunks go through an actor pool; each actor sketches its chunk, writes
    the chunk's shingle sets (`sets-N.u64`) and band keys (`keys-N.parquet`) to a folder on shared storage
    and returns per row only its index, exact hash, length and set size (the driver's share: ~32 B/row).

    `edges`: the band keys of the rows in play become (band, key, row) rows, grouped by a hash of (band,
    key) with a Ray Data groupby (a shuffle): every bucket lands whole in one group, which emits all pairs
    of each bucket — as the local search does — as pair codes, distinct within the group. The codes are
    grouped again by their own hash, so each pair lands in one group, where the bands' duplicates are
    dropped and the pair is verified by exact Jaccard against the spilled sets. Only verified edges and
    counts reach the driver, which sorts them as the local search does: the same edges, the same decisions.
    (`workers` and `spill_dir` are the local search's: here the cluster's CPUs and `shared_dir` serve.)
    """

    TARGET_GROUP_ROWS = 4_000_000  # band rows per shuffle group (~80 MB); more groups beyond

    def __init__(self, params: SketchParams, *, workers: int, spill_dir, ray, actors: int | None, batch_size: int,
                 shared_dir: Path, log=lambda msg: None):
        self.params, self.batch_size, self.ray, self.log = params, batch_size, ray, log
        self.actors = actors
        self.shared_dir = Path(shared_dir)
        self.spill: Path | None = None
        self.n = 0

    def __enter__(self) -> "RayNearDuplicates":
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        self.spill = Path(tempfile.mkdtemp(prefix="near-duplicates-", dir=self.shared_dir))
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.spill, ignore_errors=True)

    def sketch(self, inputs, progress=lambda n: None) -> dict[str, np.ndarray]:
        ray = self.ray
        configure_data_context(ray)
        chunks = row_group_chunks(inputs.files, self.batch_size)
        for i, chunk in enumerate(chunks):
            chunk["chunk"] = i
        self.n = n = inputs.num_rows
        exact = np.zeros(n, np.uint64)
        length = np.zeros(n, np.int64)
        set_size = np.zeros(n, np.int64)
        ds = chunk_dataset(ray, chunks).map_batches(
            _SketchWorker,
            fn_constructor_kwargs={"params": self.params, "spill": str(self.spill), "batch_size": self.batch_size},
            batch_size=1, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=min(self.actors or cluster_cpus(ray), len(chunks))),
            num_cpus=1,
        )
        for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows = block.column("row").to_numpy()
            exact[rows] = block.column("exact").to_numpy()
            length[rows] = block.column("length").to_numpy()
            set_size[rows] = block.column("set_size").to_numpy()
            progress(len(rows))
        self.set_offsets = np.concatenate([[0], np.cumsum(set_size)]).astype(np.int64)
        # Chunk k's sets file holds the flattened sets of its rows: positions from set_offsets[start].
        self.set_files = [(str(self.spill / f"sets-{c['chunk']:06d}.u64"), int(self.set_offsets[c["start"]]))
                          for c in chunks]
        self.key_files = [str(self.spill / f"keys-{c['chunk']:06d}.parquet") for c in chunks]
        return {"exact": exact, "length": length}

    def edges(self, rows: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
        ray = self.ray
        empty = np.zeros(0, np.int64)
        if self.params.bands == 0 or len(rows) < 2:
            return empty, empty, np.zeros(0), 0, 0
        in_play = np.zeros(self.n, dtype=bool)
        in_play[rows] = True
        groups = max(2 * cluster_cpus(ray), -(-len(rows) * self.params.bands // self.TARGET_GROUP_ROWS))
        # The key files are read by tasks themselves (ray.data.read_parquet's file listing drags in fsspec's
        # HTTP filesystem, which a mismatched fsspec breaks; these paths need none of it).
        band_rows = chunk_dataset(ray, [{"file": f} for f in self.key_files]).map_batches(
            _band_rows, fn_kwargs={"in_play": ray.put(in_play), "groups": groups}, batch_size=1,
            batch_format="pyarrow")
        pairs = band_rows.groupby("group", num_partitions=groups).map_groups(
            _bucket_pairs, fn_kwargs={"n": self.n, "groups": groups}, batch_format="numpy")
        verified = pairs.groupby("group", num_partitions=groups).map_groups(
            _verify_group, fn_kwargs={"n": self.n, "sets": self.set_files, "set_offsets": ray.put(self.set_offsets),
                                      "threshold": threshold}, batch_format="numpy")
        codes, weights, n_candidates, largest = [empty], [np.zeros(0)], 0, 0
        for block in verified.iter_batches(batch_size=None, batch_format="numpy"):
            edge = block["code"] >= 0  # the other rows are one summary per group
            codes.append(block["code"][edge])
            weights.append(block["weight"][edge])
            n_candidates += int(block["candidates"].sum())
            largest = max(largest, int(block["largest"].max(initial=0)))
        code, weight = np.concatenate(codes), np.concatenate(weights)
        order = np.argsort(code, kind="stable")
        code, weight = code[order], weight[order]
        self.log(f"dedupe: {n_candidates:,} candidate pairs verified on Ray in {groups} groups, {len(code):,} edges")
        return code // self.n, code % self.n, weight, n_candidates, largest


class _SketchWorker:
    """A Ray Data actor for pass 1: sketches one chunk, spills its sets and band keys, returns per-row figures."""

    def __init__(self, params: SketchParams, spill: str, batch_size: int):
        self.params, self.spill, self.batch_size = params, Path(spill), batch_size

    def __call__(self, table: pa.Table) -> pa.Table:
        (chunk,) = table.to_pylist()
        inputs = _ChunkInput(chunk["file"], chunk["row_groups"], self.batch_size)
        bands = self.params.bands
        exact, length, sizes, keys = [], [], [], []
        with open(self.spill / f"sets-{chunk['chunk']:06d}.u64", "wb") as sets_file:
            for batch in inputs.batches(columns=self.params.columns()):
                e, n_chars, k, fingerprints, counts = sketch_batch(self.params.texts(batch), self.params)
                fingerprints.tofile(sets_file)
                exact.append(e), length.append(n_chars), sizes.append(counts), keys.append(k)
        rows = chunk["start"] + np.arange(sum(map(len, exact)), dtype=np.int64)
        if bands:
            k = np.concatenate(keys)
            pq.write_table(pa.table({"row": rows, **{f"b{b:03d}": k[:, b] for b in range(bands)}}),
                           self.spill / f"keys-{chunk['chunk']:06d}.parquet", compression="none")
        set_size = np.concatenate(sizes) if bands else np.zeros(len(rows), np.int64)
        return pa.table({"row": rows, "exact": np.concatenate(exact), "length": np.concatenate(length),
                         "set_size": set_size.astype(np.int64)})


def _resolve(value):
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def _band_rows(chunk: pa.Table, in_play, groups: int) -> dict:
    """(group, band, key, row) for every band of every row in play of one key file; group = hash of
    (band, key)."""
    in_play = _resolve(in_play)
    table = pq.read_table(chunk.column("file")[0].as_py())
    batch = {name: table.column(name).to_numpy() for name in table.column_names}
    rows = batch["row"]
    keep = in_play[rows]
    names = sorted(k for k in batch if k.startswith("b"))
    rows = rows[keep]
    keys = np.stack([batch[k][keep] for k in names], axis=1).astype(np.uint64)  # rows × bands
    band = np.broadcast_to(np.arange(len(names), dtype=np.uint64), keys.shape)
    group = mix64(keys ^ (band * np.uint64(0x9E3779B97F4A7C15))) % np.uint64(groups)
    return {"group": group.ravel().astype(np.int32), "band": band.ravel().astype(np.int16),
            "key": keys.ravel(), "row": np.repeat(rows, len(names))}


def _bucket_pairs(batch: dict, n: int, groups: int) -> dict:
    """All pairs of rows sharing a (band, key) bucket in this group, as distinct codes lo·n + hi, each with
    the group that verifies it (hash of the code)."""
    code, largest = shared_key_pairs((batch["band"], batch["key"]), batch["row"], n)
    group = (mix64(code.astype(np.uint64)) % np.uint64(groups)).astype(np.int32)
    return {"group": group, "code": code, "largest": np.full(len(code), largest, np.int32)}


def _verify_group(batch: dict, n: int, sets: list, set_offsets, threshold: float) -> dict:
    """Verify this group's distinct pairs; the edges (code, weight ≥ threshold) and one summary row (code
    -1) with the group's candidate count and largest bucket."""
    code = distinct(batch["code"].copy())
    weight = verify_pairs(sets, _resolve(set_offsets), code // n, code % n, threshold)
    edge = weight >= threshold
    k = int(edge.sum())
    return {"code": np.concatenate([code[edge], [-1]]), "weight": np.concatenate([weight[edge], [0.0]]),
            "candidates": np.concatenate([np.zeros(k, np.int64), [len(code)]]),
            "largest": np.concatenate([np.zeros(k, np.int32), [int(batch["largest"].max())]]).astype(np.int32)}


def row_group_chunks(files: list, batch_size: int) -> list[dict]:
    """Runs of consecutive Parquet row groups of about `batch_size` rows: the work items of the cluster.
    `start` is the chunk's first row in the whole input (files in order)."""
    chunks: list[dict] = []
    start = 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        groups: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= batch_size:
                chunks.append({"source": -1, "file": str(f), "row_groups": groups, "start": start})
                start += rows
                groups, rows = [], 0
        if groups:
            chunks.append({"source": -1, "file": str(f), "row_groups": groups, "start": start})
            start += rows
    return chunks


def chunk_dataset(ray, chunks: list[dict]):
    """The chunk list as a Ray Dataset, one chunk per block (or an actor would get several in one call)."""
    return ray.data.from_items(chunks, override_num_blocks=len(chunks))


def configure_data_context(ray) -> None:
    """Ray Data settings every run needs: input order kept, no progress bars, sort-based groupbys."""
    import ray.data
    from ray.data.context import ShuffleStrategy

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # dedupe's "first seen" depends on stream order
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # The hash shuffle starts aggregator actors per groupby, a fixed ~3 s each on 2 CPUs (two groupbys:
    # 6 s vs 0.5 s on a 200k-row test); the sort-based one also carried the 1M benchmark's 21M band rows.
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED


def cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def to_ipc(batch: pa.RecordBatch) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def from_ipc(data: bytes) -> pa.RecordBatch:
    batches = list(pa.ipc.open_stream(data))
    return batches[0] if len(batches) == 1 else pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def merge_stats(into: dict, add: dict) -> dict:
    """Add per-chunk stats into the stage's: numbers are summed, dicts merged, anything else kept first."""
    for key, value in add.items():
        if key not in into:
            into[key] = value
        elif isinstance(value, dict) and isinstance(into[key], dict):
            merge_stats(into[key], value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(into[key], (int, float)):
            into[key] = into[key] + value
    return into
