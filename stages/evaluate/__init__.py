"""evaluate: the quality gate in front of publication (configured by the `evaluate:` section).

The executor hands the gate (`gate.QualityGate`) the candidate version folder it wrote (train / validation
/ test / rejected Parquet files and `manifest.json`) with the run's typed summaries; the gate checks it and
writes the evidence next to the data. A failed *blocking* expectation stops publication.

Modules, in the order a check's result travels:

- `config` — the section: bounds, which checks only warn, the user's own expectations.
- `candidate` — the candidate as the checks see it (rows per split, rejected rows, summaries, schema).
- one module per dataset-level check, each `check(candidate, config) -> CheckResult`:
  `split_overlap` (no id in two splits), `leakage` (near duplicates of train rows in validation / test /
  the previous test split, verified by exact Jaccard), `label_noise` (confident learning with cleanlab;
  writes `label_issues.parquet`), `label_conflicts` (dedupe's count of duplicate clusters with
  different labels), `agreement` (the annotators' alpha and kappa).
- `expectations` — the Great Expectations adapter (with `ge`): per-split suites and the dataset-level
  suite from the checks' bounds; suites, results and GE's pages go to `quality/`.
- `gate` — the orchestration and `QualityGate`; `result` — `EvaluationResult`, `Failure`, `CheckResult`.
- `report` — report.html from one `EvaluationResult`; `summary` — the terminal summary of a stored one.

Heavy libraries (great_expectations, scikit-learn, cleanlab, matplotlib) are imported inside functions so
that importing this package for its `Config` (the dataset config does) stays cheap.
"""
from stages.evaluate.config import CHECKS, Config, LabelNoise, Leakage, TextLength, UserExpectation  # noqa: F401
from stages.evaluate.evidence import LABEL_ISSUES_FILE, QUALITY_DIR, REPORT_FILE, SUMMARY_FILE  # noqa: F401
from stages.evaluate.gate import CHECK_MODULES, QualityGate, evaluate_candidate  # noqa: F401
from stages.evaluate.label_noise import LABEL_ISSUES_SCHEMA  # noqa: F401
from stages.evaluate.leakage import LEAKAGE_SCHEMA, near_duplicate_pairs, near_duplicates  # noqa: F401
from stages.evaluate.result import CheckResult, EvaluationResult, Failure  # noqa: F401
from stages.evaluate.summary import summarize_report  # noqa: F401
