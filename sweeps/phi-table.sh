#!/usr/bin/env bash
# The grokking-speed-against-φ table (docs/experiments.md, "Grokking speed against φ"): one row
# per run from several sweeps' sweep.csv files, with the knowledge-base size and φ written out,
# for `grokscope chart`. Each argument is SWEEP_CSV:ENTITIES, or SWEEP_CSV:ENTITIES:PHI for a
# sweep without a φ axis (such as progress.toml, φ 9).
# Usage: sweeps/phi-table.sh OUT.csv SWEEP_CSV:ENTITIES[:PHI]...
set -euo pipefail
OUT="${1:?usage: phi-table.sh OUT.csv SWEEP_CSV:ENTITIES[:PHI]...}"
shift
COLUMNS="seed final_train_acc final_test_id_acc step_train_acc_0.9 step_test_id_acc_0.9"
echo "entities,phi,$(echo $COLUMNS | tr ' ' ',')" > "$OUT"
for source in "$@"; do
    IFS=: read -r csv entities phi <<< "$source"
    awk -F, -v entities="$entities" -v phi="${phi:-}" -v columns="$COLUMNS" '
        NR == 1 {
            for (i = 1; i <= NF; i++) index_of[$i] = i
            n = split(columns, wanted, " ")
            for (k = 1; k <= n; k++) if (!(wanted[k] in index_of)) {
                print FILENAME ": no column " wanted[k] > "/dev/stderr"; exit 2
            }
            if (phi == "" && !("dataset.params.phi" in index_of)) {
                print FILENAME ": no φ axis; give it as SWEEP_CSV:ENTITIES:PHI" > "/dev/stderr"; exit 2
            }
            next
        }
        $index_of["status"] == "done" {
            row = entities "," (phi == "" ? $index_of["dataset.params.phi"] : phi)
            for (k = 1; k <= n; k++) row = row "," $index_of[wanted[k]]
            print row
        }' "$csv" >> "$OUT"
done
echo "wrote $OUT ($(($(wc -l < "$OUT") - 1)) runs)"
