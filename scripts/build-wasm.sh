#!/usr/bin/env bash
# Builds wasm/trade-scanner.wasm from wasm/trade-scanner.c (Debian: apt-get install clang lld).
# The .wasm is committed, so that `npm install` needs no C compiler; test/core/wasm-scanner.test.ts
# builds it again where clang is present and checks that the committed file is this build.
# usage: scripts/build-wasm.sh [OUT]   (default: wasm/trade-scanner.wasm)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-wasm/trade-scanner.wasm}"
clang --target=wasm32 -O3 -nostdlib -ffreestanding -fno-builtin -Wall -Wextra -Werror \
  -Wl,--no-entry -Wl,--strip-all -Wl,--initial-memory=4194304 \
  -o "$out" wasm/trade-scanner.c
