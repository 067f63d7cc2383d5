"""The Ray executor publishes exactly what the local executor publishes (issue 8).

A local Ray with 2 CPUs, started once for the module, runs the SMS config and a planted-duplicates corpus
from several sources; the versions must match the local executor's: same content fingerprint, same rows,
same rejected rows (with their details), same stage folders and stats. Skipped where Ray is not installed
(`pip install -e ".[ray]"`).
"""
from __future__ import annotations

import csv
import importlib.util
import json
import random
import sys

import pyarrow.parquet as pq
import pytest

import schemas

from .conftest import SAMPLES, run_pipeline, sms_config, write_config

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray is not installed (pip install -e ".[ray]")')


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def run_ray(config_path, data_dir, **kwargs):
    from pipeline.config import load_config
    from pipeline.ray_executor import RayExecutor

    messages: list[str] = []
    result = RayExecutor(load_config(config_path), data_dir=data_dir, log=messages.append, **kwargs).run()
    return result, messages


def version_content(data_dir, dataset, version) -> dict:
    folder = data_dir / "versions" / dataset / version
    out = {}
    for name in [*schemas.SPLITS, "rejected"]:
        table = pq.read_table(folder / f"{name}.parquet")
        out[name] = sorted(table.to_pylist(), key=lambda row: row["id"])
    return out


def assert_same_runs(local, ray_result, local_dir, ray_dir, dataset):
    assert local.published and ray_result.published
    assert ray_result.manifest["content_fingerprint"] == local.manifest["content_fingerprint"]
    # Same rows, column for column (scores, cluster ids, rejected details), not only the fingerprinted ones.
    assert version_content(ray_dir, dataset, ray_result.version) == version_content(local_dir, dataset, local.version)
    for a, b in zip(local.stages, ray_result.stages, strict=True):
        assert (a.name, a.fingerprint, a.folder.name) == (b.name, b.fingerprint, b.folder.name)
        assert (a.rows_in, a.rows_out, a.dropped, a.stats) == (b.rows_in, b.rows_out, b.dropped, b.stats)
    for key in ("splits", "rejected", "rows_in", "config_hash", "code_version", "inputs"):
        assert ray_result.manifest[key] == local.manifest[key], key


@needs_ray
def test_sms_on_ray_publishes_the_local_version(tmp_path, ray_cluster):
    config = write_config(tmp_path, sms_config())
    local = run_pipeline(config, tmp_path / "local")
    on_ray, log = run_ray(config, tmp_path / "ray")
    assert_same_runs(local, on_ray, tmp_path / "local", tmp_path / "ray", "sms-spam")
    assert "clean: on Ray, 1 chunk(s)" in log and "dedupe: on the driver" in log
    # The stage folders of either executor serve the other: a local run over the Ray run's folders
    # recomputes nothing up to split (which now has a parent version to follow) and finds the same version.
    again = run_pipeline(config, tmp_path / "ray")
    assert not again.published and again.version == on_ray.version
    assert [s.cached for s in again.stages] == [True, True, True, True, False]


def planted_sources(folder, rng: random.Random) -> list[dict]:
    """Three JSONL sources of SMS texts with planted duplicates, in and across sources, and broken rows."""
    with open(SAMPLES / "sms_spam" / "SMSSpamCollection", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    rows = [r for r in rows if len(r[1].split()) >= 8][:900]
    vocabulary = sorted({w for _, t in rows for w in t.split()})
    sources = []
    for s in range(3):
        lines = []
        for label, text in rows[s * 300:(s + 1) * 300]:
            lines.append({"text": text, "label": label})
            words = text.split()
            r = rng.random()
            if r < 0.25:  # a near duplicate: one or two words changed
                for _ in range(rng.randint(1, 2)):
                    words[rng.randrange(len(words))] = rng.choice(vocabulary)
                lines.append({"text": " ".join(words), "label": None})
            elif r < 0.4:  # exact copies, unlabelled: only the stream order decides which one stays
                lines[-1]["label"] = None
                lines.append({"text": text, "label": None})
            elif r < 0.5:  # a case / spacing variant
                lines.append({"text": "  " + text.upper(), "label": None})
        # Duplicates of another source's rows, and rows collect or clean reject.
        lines += [{"text": t, "label": None} for _, t in rng.sample(rows, 20)]
        lines += [{"text": "<p>&nbsp;</p>", "label": "ham"}, {"text": "  ", "label": "ham"}, {"label": "ham"}]
        rng.shuffle(lines)
        path = folder / f"part{s}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(json.dumps(line) + "\n")
            fh.write("{not json\n")
        sources.append({"name": f"src{s}", "path": path.name, "format": "jsonl", "label_field": "label"})
    return sources


@needs_ray
def test_planted_duplicates_from_several_sources(tmp_path, ray_cluster, monkeypatch):
    from pipeline.ray_executor import RayNearDuplicates

    # Small shuffle groups, so that band keys and pairs really are spread over many groups.
    monkeypatch.setattr(RayNearDuplicates, "TARGET_GROUP_ROWS", 2_000)
    config = write_config(tmp_path, {
        "dataset": "planted",
        "labels": ["ham", "spam"],
        "sources": planted_sources(tmp_path, random.Random(3)),
        "clean": {"signals": []},
        "dedupe": {"shingle": "word", "ngram": 3, "threshold": 0.7},
        "evaluate": {"enabled": False},
    })
    # Small batches: clean runs as many chunks over both actors, which must come back in stream order.
    local = run_pipeline(config, tmp_path / "local", batch_size=64)
    on_ray, log = run_ray(config, tmp_path / "ray", batch_size=64)
    assert "collect: on Ray, 3 chunk(s)" in log
    # Near-dedupe ran on the cluster (band keys shuffled, pairs verified there), not on the driver.
    shuffled = [m for m in log if m.startswith("dedupe: ") and "verified on Ray in" in m]
    assert shuffled and int(shuffled[0].split("verified on Ray in ")[1].split()[0]) > 4, shuffled
    assert any(m.startswith("clean: on Ray,") and int(m.split(", ")[1].split()[0]) > 10 for m in log)
    assert_same_runs(local, on_ray, tmp_path / "local", tmp_path / "ray", "planted")
    for a, b in zip(local.stages, on_ray.stages):  # every stage's output in the same order, row for row
        for name in ("part-00000.parquet", "rejected.parquet"):
            assert pq.read_table(a.folder / name).equals(pq.read_table(b.folder / name)), (a.name, name)
    dedupe_folder = next(r.folder for r in on_ray.stages if r.name == "dedupe")
    assert sorted(p.name for p in dedupe_folder.iterdir()) == ["part-00000.parquet", "rejected.parquet", "stats.json"]
    dropped = {r.name: r.dropped for r in on_ray.stages}
    assert dropped["collect"].get("invalid_json") == 3
    assert dropped["dedupe"].get("exact_duplicate", 0) > 50 and dropped["dedupe"].get("near_duplicate", 0) > 20


@needs_ray
def test_cli_runs_on_ray_and_checks_its_options(tmp_path, ray_cluster):
    from typer.testing import CliRunner

    from pipeline.cli import app

    config = write_config(tmp_path, sms_config(evaluate={"enabled": False}))
    out = CliRunner().invoke(app, ["run", str(config), "--data-dir", str(tmp_path / "data"), "--executor", "ray"])
    assert out.exit_code == 0, out.output
    assert "published" in out.output and "clean: on Ray" in out.output
    for args in (["--executor", "spark"], ["--ray-address", "auto"]):
        out = CliRunner().invoke(app, ["run", str(config), "--data-dir", str(tmp_path / "data"), *args])
        assert out.exit_code != 0


def test_without_ray_the_executor_says_how_to_install_it(tmp_path, monkeypatch):
    from pipeline.config import load_config
    from pipeline.errors import UserError
    from pipeline.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    config = write_config(tmp_path, sms_config())
    with pytest.raises(UserError, match=r"pip install -e \"\.\[ray\]\""):
        RayExecutor(load_config(config), data_dir=tmp_path / "data")


def test_the_local_executor_never_imports_ray():
    import subprocess

    code = ("import sys, pipeline.cli, pipeline.executor, pipeline.ray_executor; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@needs_ray
def test_a_signal_defined_at_run_time_reaches_the_actors(tmp_path, ray_cluster):
    """Ray's actors build the clean stage themselves: a signal registered in the driver only (a notebook's
    `__main__`) travels to them by value, and the version equals the local executor's."""
    from pipeline.filters import SIGNALS

    cell = ("import pyarrow as pa\nfrom pipeline.filters import signal\n\n"
            "@signal('digit_share_nb')\ndef digit_share_nb(texts):\n"
            "    values = texts.to_pylist()\n"
            "    return {'digit_share_nb': pa.array([sum(c.isdigit() for c in t) / max(len(t), 1) for t in values])}\n")
    exec(compile(cell, "<notebook cell>", "exec"), {"__name__": "__main__"})
    try:
        config = write_config(tmp_path, sms_config(clean={"signals": [], "filters": {"digit_share_nb": {"max": 0.2}}},
                                                   evaluate={"enabled": False}))
        local = run_pipeline(config, tmp_path / "local")
        on_ray, log = run_ray(config, tmp_path / "ray")
        assert "clean: on Ray, 1 chunk(s)" in log
        assert on_ray.manifest["content_fingerprint"] == local.manifest["content_fingerprint"]
        clean = next(s for s in on_ray.stages if s.name == "clean")
        assert clean.dropped.get("digit_share_nb_above_max", 0) > 10
    finally:
        SIGNALS.pop("digit_share_nb", None)


@needs_ray
@pytest.mark.parametrize("name", ["alpaca_en", "glaive_toolcall"])
def test_generative_kinds_on_ray_publish_the_local_version(tmp_path, ray_cluster, name):
    """generation (alpaca_en) and chat (glaive_toolcall): the same content fingerprint, rows and rejected rows
    (with their JSON records) on Ray as locally; dedupe's key is rendered from the payload in the actors."""
    import yaml

    from .conftest import REPO

    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    for source in config["sources"]:
        source["path"] = str((REPO / "configs" / source["path"]).resolve())
    config["clean"]["signals"] = []
    config["clean"]["filters"] = {k: v for k, v in config["clean"].get("filters", {}).items() if "lang" not in k}
    path = write_config(tmp_path, config)
    local = run_pipeline(path, tmp_path / "local")
    on_ray, log = run_ray(path, tmp_path / "ray")
    assert_same_runs(local, on_ray, tmp_path / "local", tmp_path / "ray", config["dataset"])
    assert "clean: on Ray, 1 chunk(s)" in log and "dedupe: on the driver" in log
    assert on_ray.manifest["kind"] == local.manifest["kind"] != "classification"


@needs_ray
def test_decontaminate_on_ray_publishes_the_local_version(tmp_path, ray_cluster):
    """The decontaminate stage runs on the actors (each builds the eval sets' index once) in several chunks:
    the same removed rows, details, stats (examples chosen by smallest id) and version as locally."""
    import yaml

    from .conftest import REPO

    config = yaml.safe_load((REPO / "configs" / "trec_decontaminated.yaml").read_text())
    for part in (config["sources"][0], config["decontaminate"]["eval_sets"][0]):
        part["path"] = str((REPO / "configs" / part["path"]).resolve())
    config["clean"]["signals"] = []
    config["decontaminate"]["mode"] = "both"
    config["evaluate"] = {"label_noise": {"enabled": False}}
    path = write_config(tmp_path, config)
    local = run_pipeline(path, tmp_path / "local", batch_size=1000)
    on_ray, log = run_ray(path, tmp_path / "ray", batch_size=1000)
    assert any(m.startswith("decontaminate: on Ray,") and int(m.split(", ")[1].split()[0]) > 1 for m in log), log
    assert_same_runs(local, on_ray, tmp_path / "local", tmp_path / "ray", config["dataset"])
    stage = next(s for s in on_ray.stages if s.name == "decontaminate")
    assert stage.dropped == {"contaminated": stage.stats["rows_removed"]} and stage.stats["rows_removed"] >= 11
    assert on_ray.manifest["decontamination"] == local.manifest["decontamination"]
    assert on_ray.manifest["evaluation"]["decontamination"]["contaminated_rows"] == 0


@needs_ray
def test_auto_languages_are_resolved_once_for_all_chunks(tmp_path, ray_cluster):
    """`lang: {allowed: auto}` is resolved on the driver from the whole input (`Stage.prepare`), and the actors
    get the list: the first chunk, a fifth French, still drops the French (4.5 % of the whole input, under
    the 5 % share), as the local run does. (An actor resolving from its own chunk would allow French there.)"""
    import pandas as pd

    frame = pd.read_csv(SAMPLES / "tatoeba" / "test.csv")
    german = frame[frame.label == "deu"]
    others = frame[frame.label == "fra"].head(8)
    path = tmp_path / "german.csv"
    pd.concat([others, german]).assign(label="de")[["text", "label"]].to_csv(path, index=False)  # French first
    config = write_config(tmp_path, {
        "dataset": "german", "labels": ["de"],
        "sources": [{"name": "s", "path": str(path), "format": "csv", "text_field": "text", "label_field": "label"}],
    })
    local = run_pipeline(config, tmp_path / "local", batch_size=40, allow_failed_gates=True)
    on_ray, log = run_ray(config, tmp_path / "ray", batch_size=40, allow_failed_gates=True)
    assert "clean: on Ray, 5 chunk(s)" in log
    assert_same_runs(local, on_ray, tmp_path / "local", tmp_path / "ray", "german")
    clean = next(s for s in on_ray.stages if s.name == "clean")
    assert clean.summary.allowed("lang") == ["de"] and clean.dropped.get("lang_not_allowed", 0) == len(others)
