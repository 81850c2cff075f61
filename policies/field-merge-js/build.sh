#!/bin/sh
# Builds the policy component from policy.js: ./build.sh [OUT.wasm] (default policy.wasm).
# Needs componentize-js (npm install, or npm install -g @bytecodealliance/componentize-js@0.23.0).
# The unit tests run natively: node --test
set -eu
caller="$(pwd)"
cd "$(dirname "$0")"
out="${1:-$(pwd)/policy.wasm}"
case "$out" in /*) ;; *) out="$caller/$out" ;; esac
PATH="$(pwd)/node_modules/.bin:$PATH"
command -v componentize-js >/dev/null \
  || { echo "build.sh: componentize-js not found: npm install" >&2; exit 1; }
# componentize-js reads the modules under the current directory: from policies/, policy.js
# reaches the helpers in sdk/js/. A policy has no network: the HTTP imports are left out.
cd ..
componentize-js field-merge-js/policy.js --wit ../wit/policy.wit --world-name policy \
  --disable http fetch-event --out "$out" >/dev/null
echo "built $out"
