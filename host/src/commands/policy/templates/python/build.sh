#!/bin/sh
# Builds the policy component from policy.py: ./build.sh [OUT.wasm] (default policy.wasm).
# Needs componentize-py: pip install componentize-py=={{componentize_py}}
# Also generates the bindings (bindings/) that the unit tests import.
set -eu
caller="$(pwd)"
cd "$(dirname "$0")"
out="${1:-$(pwd)/policy.wasm}"
case "$out" in /*) ;; *) out="$caller/$out" ;; esac
command -v componentize-py >/dev/null \
  || { echo "build.sh: componentize-py not found: pip install componentize-py=={{componentize_py}}" >&2; exit 1; }
rm -rf bindings
componentize-py -q -d wit -w policy bindings bindings
componentize-py -q -d wit -w policy componentize -p . policy -o "$out"
echo "built $out"
