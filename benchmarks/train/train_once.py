"""`sftpipe train` without the CLI (for machines where the pipeline's stage dependencies are not installed,
such as the GPU box): train on a published version with the `train:` defaults plus the options given, print
the run folder and test metrics as JSON.

    python benchmarks/train/train_once.py --data-dir data --dataset sms_spam --version v1 --max-length 64
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--version", default="latest")
    ap.add_argument("--runs-dir", default="runs/train")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="a train config key, e.g. --set max_length=64 --set epochs=2 --set model='\"path\"'")
    args = ap.parse_args()

    from train.config import Config
    from train.run import train_version

    values = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    cfg = Config(**values)
    result = train_version(args.dataset, args.version, cfg, data_dir=args.data_dir, runs_root=args.runs_dir,
                           echo=lambda m: print(m, flush=True))
    m = result.metrics
    print(json.dumps({"run_dir": str(result.run_dir), "test_accuracy": m["test"]["accuracy"],
                      "test_macro_f1": m["test"]["macro_f1"], "test_weighted_f1": m["test"]["weighted_f1"],
                      "training": m["training"]}, indent=2))


if __name__ == "__main__":
    main()
