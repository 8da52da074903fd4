#!/bin/sh
# Runs each coverage-guided fuzzer for SECONDS (default 60), one after the other, each one
# libFuzzer process (no -jobs/-fork: the machine may be shared). Not run by CI; CI replays the committed corpus under
# `cargo test -p devext-fuzz-targets`.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and nothing else: the stable toolchain
# of rust-toolchain.toml with RUSTC_BOOTSTRAP=1 for cargo-fuzz's -Z flags. Built without a
# sanitizer (-s none): the code is safe Rust, and a crash is a panic. The committed corpus
# tests/fuzz/corpus/<target>/ is read; new inputs go to tests/fuzz/fuzz/corpus/<target>/ (not
# committed); a crash is written to tests/fuzz/fuzz/artifacts/<target>/ — once fixed, copy it
# into the committed corpus as its regression test.
set -eu
cd "$(dirname "$0")/../.."
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"jasper_soap jasper_rest jasper_dates manifest locate device_config sim_request wire"}
export RUSTC_BOOTSTRAP=1
cargo fuzz build --fuzz-dir tests/fuzz/fuzz -s none
status=0
for t in $targets; do
    echo "== $t: $seconds s"
    mkdir -p "tests/fuzz/fuzz/corpus/$t"
    cargo fuzz run --fuzz-dir tests/fuzz/fuzz -s none "$t" \
        "tests/fuzz/fuzz/corpus/$t" "tests/fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -dict=tests/fuzz/json.dict -print_final_stats=1 || status=1
done
exit $status
