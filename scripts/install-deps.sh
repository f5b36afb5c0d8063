#!/usr/bin/env bash
# Installs every Debian package that building and testing moshi-rt needs.
# Idempotent and non-interactive: CI and a fresh machine run it before building.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-dev          # libFuzzer target and the sanitizer build
  libgtest-dev                   # unit tests
  nlohmann-json3-dev             # config.json / safetensors header parsing
  libsndfile1-dev libsoxr-dev    # audio file I/O and resampling
  libhwy-dev                     # portable SIMD (x86 and ARM)
  libopenblas-dev                # f32 GEMM for the convolutions
  libsentencepiece-dev sentencepiece   # LM text tokens (spm_train makes the test model)
  python3-dev pybind11-dev python3-numpy python3-pytest   # the Python module and its tests
  sox                            # tests make and measure audio files
  libcurl4-openssl-dev           # Hugging Face hub downloads
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
