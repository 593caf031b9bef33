#!/usr/bin/env bash
# Installs what cross builds need, only what is missing (idempotent): the
# Rust targets of the Linux and WASI packages, and zig with cargo-zigbuild
# in a private venv (.cache/cross-venv; `napi build -x` looks for `zig` and
# `cargo-zigbuild` on PATH). Prints the PATH entry to add:
#   export PATH="$(bash scripts/cross-tools.sh):$PATH"
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(aarch64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-musl wasm32-wasip1-threads)
installed="$(rustup target list --installed)"
for target in "${TARGETS[@]}"; do
  grep -qx "$target" <<<"$installed" || rustup target add "$target" >&2
done

VENV=.cache/cross-venv
if [ ! -x "$VENV/bin/cargo-zigbuild" ]; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet 'ziglang==0.17.*' 'cargo-zigbuild==0.24.*' >&2
fi
# `zig` itself: the ziglang wheel ships it as a module; a wrapper on PATH.
if [ ! -x "$VENV/bin/zig" ]; then
  printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$(pwd)/$VENV/bin/python" >"$VENV/bin/zig"
  chmod +x "$VENV/bin/zig"
fi
echo "$(pwd)/$VENV/bin"
