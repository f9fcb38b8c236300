#!/usr/bin/env bash
# Instruction counts per operation under callgrind: one process per (subject, operation), with
# collection switched on only inside the timed function (`pt_bench::work::run*`), divided by
# the units the operation handles. Writes target/pt-bench/callgrind.tsv and refreshes
# target/pt-bench/results.md.
#
#   benches/callgrind.sh            # full sizes (1 GiB of pages, 64 GiB of blocks)
#   benches/callgrind.sh --quick    # quick sizes
set -euo pipefail
cd "$(dirname "$0")/.."
quick="${1:-}"
cargo build --release -p pt-bench --bin pt-bench-ops >&2
bin=target/release/pt-bench-ops
out=target/pt-bench
mkdir -p "$out"
tsv="$out/callgrind.tsv"
: > "$tsv"
ops="map_4k map_2m unmap_4k unmap_2m wrprotect_4k split_2m translate fault teardown unmap_4k_clean unmap_2m_clean teardown_clean"
for who in armv8 armv7 aarch64-paging page-table-generic page_table_multiarch floor; do
  for op in $ops; do
    if [ "$($bin $quick $who $op)" = "n/a" ]; then continue; fi
    units=$($bin $quick units $op)
    cg="$out/callgrind.$who.$op.out"
    valgrind --tool=callgrind --callgrind-out-file="$cg" \
      --toggle-collect='pt_bench::work::run*' $bin $quick $who $op >/dev/null 2>&1
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$cg")
    per=$(awk -v a="$ir" -v b="$units" 'BEGIN {printf "%.2f", a / b}')
    printf '%s\t%s\t%s\n' "$op" "$who" "$per" >> "$tsv"
    printf '%-20s %-14s %12s Ir / %8s units = %10s\n' "$who" "$op" "$ir" "$units" "$per" >&2
  done
done
$bin $quick report
