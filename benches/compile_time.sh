#!/usr/bin/env bash
# Compile times, reported in BENCHMARKS.md:
#  1. a clean release build of es-core with its derives, from nothing
#     (dependencies included), and of es-core and es-derive alone
#     (dependencies already built);
#  2. the bank's account domain with the derives and written by hand
#     (benches/examples/bank_{derived,by_hand}.rs), median of 5 rebuilds each.
set -euo pipefail
cd "$(dirname "$0")/.."

secs() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

target="$(mktemp -d)"
start=$(secs)
CARGO_TARGET_DIR="$target" cargo build -q --release -p es-core
echo "es-core + derives, clean release build with dependencies: $(echo "$(secs) - $start" | bc) s"
CARGO_TARGET_DIR="$target" cargo clean -q --release -p es-core -p es-derive
start=$(secs)
CARGO_TARGET_DIR="$target" cargo build -q --release -p es-core
echo "es-core + es-derive alone (dependencies built): $(echo "$(secs) - $start" | bc) s"
rm -rf "$target"

cargo build -q --release -p benches --examples
for example in bank_derived bank_by_hand; do
    for _ in 1 2 3 4 5; do
        touch "benches/examples/$example.rs"
        start=$(secs)
        cargo build -q --release -p benches --example "$example"
        echo "$(secs) - $start" | bc
    done | median | xargs printf "%s, release build of the domain: %s s\n" "$example"
done
