#!/bin/sh
# Builds the policy component: ./build.sh [OUT.wasm] (default policy.wasm).
# Needs Rust and its wasm32-wasip2 target: rustup target add wasm32-wasip2
set -eu
caller="$(pwd)"
cd "$(dirname "$0")"
out="${1:-$(pwd)/policy.wasm}"
case "$out" in /*) ;; *) out="$caller/$out" ;; esac
cargo build --quiet --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{lib}}.wasm" "$out"
echo "built $out"
