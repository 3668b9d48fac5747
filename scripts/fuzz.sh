#!/usr/bin/env bash
# Fuzz the meshcore wire-format decoder with cargo-fuzz (libFuzzer, nightly).
#
#   scripts/fuzz.sh [SECONDS]     # default 300
#
# Installs cargo-fuzz if missing, seeds fuzz/corpus/decode from the real captured frames in
# testdata/vectors/corpus.txt (MESHLENS_VECTORS overrides the vectors directory), then runs the
# `decode` target. Exits non-zero when libFuzzer finds a crash; the input is left in
# fuzz/artifacts/decode/ (reproduce with `cargo +nightly fuzz run decode <file>`).
set -euo pipefail

seconds="${1:-300}"
case "$seconds" in
    '' | *[!0-9]*)
        echo "usage: $0 [SECONDS]" >&2
        exit 2
        ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vectors="${MESHLENS_VECTORS:-$root/testdata/vectors}"
corpus_txt="$vectors/corpus.txt"
seed_dir="$root/fuzz/corpus/decode"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "error: cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz..." >&2
    cargo install cargo-fuzz --version 0.13.1 --locked
fi

if [[ ! -f "$corpus_txt" ]]; then
    echo "error: $corpus_txt not found (set MESHLENS_VECTORS to a vectors directory)" >&2
    exit 1
fi

# One file per corpus frame, named by line number; libFuzzer adds what it discovers.
mkdir -p "$seed_dir"
n=0
while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line//[[:space:]]/}"
    [[ -z "$line" ]] && continue
    n=$((n + 1))
    printf '%s' "$line" | xxd -r -p >"$seed_dir/seed-$(printf '%04d' "$n")"
done <"$corpus_txt"
echo "seeded $n frames into $seed_dir ($(find "$seed_dir" -type f | wc -l) files in corpus)" >&2

cd "$root/fuzz"
# libFuzzer exits non-zero on a crash, a leak, a timeout or an out-of-memory; `set -e` passes
# that on.
cargo +nightly fuzz run decode -- -max_total_time="$seconds" -max_len=300
echo "fuzzing finished after ${seconds}s without a crash; corpus: $(find "$seed_dir" -type f | wc -l) files" >&2
