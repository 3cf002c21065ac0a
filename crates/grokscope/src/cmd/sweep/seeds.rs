//! `seeds.csv` of `sweep collect`: for a sweep with a `seed` axis, the spread over seeds of the
//! milestone and final columns of sweep.csv, one row per combination of the other axis values.

use super::figures::group_rows;
use train::metrics::fmt_value;
use util::stats::spread;

/// The axis whose values are pooled.
pub const SEED_KEY: &str = "seed";
/// sweep.csv columns summarised over seeds.
const SUMMARISED: [&str; 6] = [
    "step_train_acc_0.9",
    "step_test_id_acc_0.9",
    "final_train_acc",
    "final_test_id_acc",
    "final_test_ood_acc",
    "best_test_ood_acc",
];

/// The header and rows of seeds.csv from sweep.csv's: the other axis values, the number of seeds,
/// then for each summarised column the number of seeds with a value (a milestone left empty was
/// not reached) and their mean, sample standard deviation, minimum and maximum. `None` when the
/// sweep has no `seed` axis.
pub fn seed_table(
    header: &[String],
    rows: &[Vec<String>],
) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let seed_col = header.iter().position(|h| h == SEED_KEY)?;
    let status_col = header.iter().position(|h| h == "status")?;
    let others: Vec<usize> = (1..status_col).filter(|&i| i != seed_col).collect();
    let mut out_header: Vec<String> = others.iter().map(|&i| header[i].clone()).collect();
    out_header.push("seeds".into());
    for col in SUMMARISED {
        for stat in ["n", "mean", "sd", "min", "max"] {
            out_header.push(format!("{col}_{stat}"));
        }
    }
    let out_rows = group_rows(header, rows, &others)
        .into_iter()
        .map(|(_, members)| {
            let mut row: Vec<String> = others.iter().map(|&i| members[0][i].clone()).collect();
            row.push(members.len().to_string());
            for col in SUMMARISED {
                let values: Vec<f64> = header
                    .iter()
                    .position(|h| h == col)
                    .map(|c| members.iter().filter_map(|r| r[c].parse().ok()).collect())
                    .unwrap_or_default();
                row.push(values.len().to_string());
                row.extend(spread(&values).iter().map(|v| fmt_value(*v)));
            }
            row
        })
        .collect();
    Some((out_header, out_rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn seeds_are_pooled_per_value_of_the_other_axes() {
        let header = strings(&["point", "phi", "seed", "status", "step_test_id_acc_0.9"]);
        let rows = vec![
            strings(&["p000", "3.6", "42", "done", ""]),
            strings(&["p001", "3.6", "0", "done", "4000"]),
            strings(&["p002", "9", "42", "done", "2700"]),
            strings(&["p003", "9", "0", "done", "2500"]),
            strings(&["p004", "9", "1", "done", "2600"]),
        ];
        let (h, r) = seed_table(&header, &rows).unwrap();
        assert_eq!(h[..2], strings(&["phi", "seeds"]));
        let col = |name: &str| h.iter().position(|x| x == name).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (
                r[0][1].as_str(),
                r[0][col("step_test_id_acc_0.9_n")].as_str()
            ),
            ("2", "1")
        );
        assert_eq!(r[1][col("step_test_id_acc_0.9_mean")], "2600");
        assert_eq!(r[1][col("step_test_id_acc_0.9_sd")], "100");
        assert_eq!(r[1][col("step_test_id_acc_0.9_min")], "2500");
        assert_eq!(r[0][col("final_test_id_acc_n")], "0");
        assert!(seed_table(&strings(&["point", "phi", "status"]), &[]).is_none());
    }
}
