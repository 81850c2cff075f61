#!/bin/sh
# Builds the policy component from policy.js: ./build.sh [OUT.wasm] (default policy.wasm).
# Needs componentize-js: npm install (or npm install -g @bytecodealliance/componentize-js@{{componentize_js}})
set -eu
caller="$(pwd)"
cd "$(dirname "$0")"
out="${1:-$(pwd)/policy.wasm}"
case "$out" in /*) ;; *) out="$caller/$out" ;; esac
PATH="$(pwd)/node_modules/.bin:$PATH"
command -v componentize-js >/dev/null \
  || { echo "build.sh: componentize-js not found: npm install" >&2; exit 1; }
# A policy has no network: the HTTP imports are left out.
componentize-js policy.js --wit wit/policy.wit --world-name policy \
  --disable http fetch-event --out "$out" >/dev/null
echo "built $out"
