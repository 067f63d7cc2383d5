"""Where and how a run executes: device, precision, batch sizes and data-loader settings.

Decided once per run from the `train:` config and the machine (`resolve_runtime`), recorded in run.json and the
model card (`Runtime.describe`). Nothing here depends on the task being trained.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UserError
from train.config import Config

_DEFAULT_CPU_BATCH = 32
_DEFAULT_GPU_BATCH = 128


@dataclass
class Runtime:
    """Where and how the run executes: device, precision, batch sizes, loader settings."""

    device: str  # "cuda" or "cpu"
    device_name: str
    precision: str  # fp32 | bf16 | fp16
    tf32: bool
    batch_size: int
    eval_batch_size: int
    workers: int
    pin_memory: bool
    fill_card: bool = False  # GPU + batch_size auto: the largest batch that fits (see gpu_batch_size)

    def describe(self) -> dict:
        import torch  # noqa: PLC0415
        import transformers  # noqa: PLC0415

        return {
            "device": self.device,
            "device_name": self.device_name,
            "precision": self.precision,
            "tf32": self.tf32,
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "dataloader_workers": self.workers,
            "pin_memory": self.pin_memory,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_runtime(cfg: Config) -> Runtime:
    import torch  # noqa: PLC0415

    gpu = torch.cuda.is_available() and not cfg.use_cpu
    if gpu:
        name = torch.cuda.get_device_name(0)
        major, _ = torch.cuda.get_device_capability(0)
        precision = cfg.precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        tf32 = major >= 8
        batch = _DEFAULT_GPU_BATCH if cfg.batch_size == "auto" else cfg.batch_size
        workers = min(4, os.cpu_count() or 1) if cfg.dataloader_workers == "auto" else cfg.dataloader_workers
        pin = True
    else:
        name = f"CPU: {_cpu_name()} ({os.cpu_count()} cores)"
        precision = "fp32" if cfg.precision == "auto" else cfg.precision
        if precision == "fp16":
            raise UserError("train.precision fp16 needs a GPU; use fp32 (or auto) on the CPU")
        tf32 = False
        batch = _DEFAULT_CPU_BATCH if cfg.batch_size == "auto" else cfg.batch_size
        workers = 0 if cfg.dataloader_workers == "auto" else cfg.dataloader_workers
        pin = False
    eval_batch = 4 * batch if cfg.eval_batch_size == "auto" else cfg.eval_batch_size
    return Runtime("cuda" if gpu else "cpu", name, precision, tf32, batch, eval_batch, workers, pin,
                   fill_card=gpu and cfg.batch_size == "auto")


def size_batches_for(rt: Runtime, cfg: Config, train_rows: int) -> None:
    """When the batch fills the card (GPU, batch_size auto): start the Trainer's search from a size suited to
    the number of training rows (see gpu_batch_size); the eval batch follows unless it was set."""
    if rt.fill_card:
        rt.batch_size = gpu_batch_size(train_rows)
        if cfg.eval_batch_size == "auto":
            rt.eval_batch_size = 4 * rt.batch_size


def gpu_batch_size(train_rows: int) -> int:
    """Where the search for a batch that fills the card starts: as large as 1024, but small enough that an
    epoch still has about 50 optimizer steps (a few huge steps train a small set badly). The Trainer
    (`auto_find_batch_size`) halves it on each out-of-memory until it fits."""
    target = max(train_rows // 50, 1)
    return max(16, min(1024, 1 << (target.bit_length() - 1)))
