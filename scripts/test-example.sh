#!/usr/bin/env bash
# Installs the built library into a scratch prefix, builds examples/ against the installed
# headers and package config only, and runs the example on the tiny synthetic model.
set -euo pipefail
build=${1:?usage: test-example.sh BUILD_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/examples" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/speech_to_speech" synthetic:tiny "$src/assets/hello.wav" "$work/out.wav" | tail -n 1
test -s "$work/out.wav"
"$work/build/c_example" synthetic:tiny
echo "example built against the installed headers and ran"
