#!/usr/bin/env bash
# Install the peer dedupe tools into their own virtualenv (benchmarks/dedupe/.peers), away from the
# project's dependencies. Each is optional: a peer that does not install is reported as missing by run.py.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.peers"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q numpy pandas pyarrow psutil || exit 1
# datatrove imports `tokenizers` (an optional dependency of it) on the MinHash path, and hashes `str` with
# xxhash, which xxhash 4 no longer accepts.
for peer in "datatrove tokenizers xxhash<4" text-dedup; do  # rensa: the project venv's bench extra
    # $peer unquoted: an entry may name several packages.
    if "$venv/bin/pip" install -q $peer; then echo "installed $peer"; else echo "could not install $peer" >&2; fi
done
"$venv/bin/pip" list 2>/dev/null | grep -i -E "^(datatrove|text-dedup|datasketch) "
