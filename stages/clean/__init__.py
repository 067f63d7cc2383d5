"""clean: normalize text, score it with quality signals, and drop rows whose signals break a rule.

Modules: `stage` (the normalizers, the signals, the section's config and the stage), `language` (the
language identifiers behind the `lang` signal and the rule it serves; the `clean.language` section).
"""
from stages.clean.language import LanguageConfig, identify  # noqa: F401 (the package's public names)
from stages.clean.stage import (  # noqa: F401
    DEFAULT_FILTERS,
    NORMALIZERS,
    CleanStage,
    Config,
    dup_line_share,
    gopher_quality,
    lang,
    top_2gram_share,
)
