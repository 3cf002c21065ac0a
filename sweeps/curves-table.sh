#!/usr/bin/env bash
# Training curves of several runs in one long-format CSV for `grokscope chart`: one row per run
# and evaluation with the run's label and the chosen metrics.csv columns.
# Usage: sweeps/curves-table.sh OUT.csv COLUMNS LABEL=METRICS_CSV...
#   e.g. sweeps/curves-table.sh curves.csv train_inferred_acc,test_inferred_iid_acc \
#        plain=run-a/metrics.csv wide=run-b/metrics.csv
set -euo pipefail
OUT="${1:?usage: curves-table.sh OUT.csv COLUMNS LABEL=METRICS_CSV...}"
COLUMNS="${2:?comma-separated metrics.csv columns}"
shift 2
echo "run,step,$COLUMNS" > "$OUT"
for source in "$@"; do
    label="${source%%=*}"
    csv="${source#*=}"
    awk -F, -v label="$label" -v columns="$COLUMNS" '
        NR == 1 {
            for (i = 1; i <= NF; i++) index_of[$i] = i
            n = split(columns, wanted, ",")
            for (k = 1; k <= n; k++) if (!(wanted[k] in index_of)) {
                print FILENAME ": no column " wanted[k] > "/dev/stderr"; exit 2
            }
            next
        }
        {
            row = label "," $index_of["step"]
            for (k = 1; k <= n; k++) row = row "," $index_of[wanted[k]]
            print row
        }' "$csv" >> "$OUT"
done
echo "wrote $OUT"
