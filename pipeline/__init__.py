"""sft-pipeline: raw text → clean, deduplicated, human-labelled, versioned SFT datasets."""

__version__ = "0.1.0"
