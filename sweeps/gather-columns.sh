#!/usr/bin/env bash
# Gathers chosen columns of several CSV files (sweep.csv, metrics.csv, …) into one long-format CSV
# for `grokscope chart`, with constant columns per source (a seed-less sweep's φ, a run's label).
# Usage: sweeps/gather-columns.sh OUT.csv COLUMNS SOURCE...
#   COLUMNS  comma-separated output columns, each NAME (the source's column of that name) or
#            NAME=SOURCE_COLUMN;
#   SOURCE   CSV, or CSV@NAME=VALUE,NAME=VALUE… giving output columns a constant value (it wins over
#            a column of the file). Rows whose `status` column is not `done` are left out.
# Examples (docs/experiments.md):
#   sweeps/gather-columns.sh phi.csv entities,phi=dataset.params.phi,seed,final_test_id_acc \
#       phi-seeds/sweep.csv@entities=200 progress/sweep.csv@entities=200,phi=9.0
#   sweeps/gather-columns.sh curves.csv run,step,test_inferred_iid_acc a/metrics.csv@run=plain
set -euo pipefail
OUT="${1:?usage: gather-columns.sh OUT.csv COLUMNS SOURCE...}"
COLUMNS="${2:?comma-separated output columns}"
shift 2
echo "$COLUMNS" | sed 's/=[^,]*//g' > "$OUT"
for source in "$@"; do
    csv="${source%%@*}"
    constants=""
    [[ "$source" == *@* ]] && constants="${source#*@}"
    awk -F, -v columns="$COLUMNS" -v constants="$constants" '
        NR == 1 {
            for (i = 1; i <= NF; i++) index_of[$i] = i
            n_const = split(constants, pairs, ",")
            for (k = 1; k <= n_const; k++) {
                split(pairs[k], kv, "="); constant[kv[1]] = kv[2]
            }
            n = split(columns, wanted, ",")
            for (k = 1; k <= n; k++) {
                name[k] = wanted[k]; from[k] = wanted[k]
                if (index(wanted[k], "=")) {
                    name[k] = substr(wanted[k], 1, index(wanted[k], "=") - 1)
                    from[k] = substr(wanted[k], index(wanted[k], "=") + 1)
                }
                if (!(name[k] in constant) && !(from[k] in index_of)) {
                    print FILENAME ": no column " from[k] " (give " name[k] " as a constant: " \
                        FILENAME "@" name[k] "=VALUE)" > "/dev/stderr"; exit 2
                }
            }
            next
        }
        !("status" in index_of) || $index_of["status"] == "done" {
            row = ""
            for (k = 1; k <= n; k++) {
                value = (name[k] in constant) ? constant[name[k]] : $index_of[from[k]]
                row = row (k > 1 ? "," : "") value
            }
            print row
        }' "$csv" >> "$OUT"
done
echo "wrote $OUT ($(($(wc -l < "$OUT") - 1)) rows)"
