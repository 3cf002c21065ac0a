//! Statistics over plain numbers: mean, spread, Pearson and Spearman correlation.

/// Mean of the values; NaN for none.
pub fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// Mean, sample standard deviation, minimum and maximum of the values (NaN where undefined).
pub fn spread(values: &[f64]) -> [f64; 4] {
    let m = mean(values.iter().copied());
    let sd = if values.len() < 2 {
        f64::NAN
    } else {
        let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
        (ss / (values.len() - 1) as f64).sqrt()
    };
    let min = values.iter().copied().fold(f64::NAN, f64::min);
    let max = values.iter().copied().fold(f64::NAN, f64::max);
    [m, sd, min, max]
}

/// Average ranks (1-based, ties share their mean rank).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Pearson correlation; `None` with fewer than two points or a constant input.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let mx = mean(x.iter().copied());
    let my = mean(y.iter().copied());
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Spearman rank correlation (Pearson correlation of average ranks); `None` with fewer than two
/// points or a constant input.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    pearson(&average_ranks(x), &average_ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_monotone_data_is_one() {
        let x = [1.0, 2.0, 3.0, 10.0];
        let y = [0.1, 0.2, 0.25, 7.0];
        assert!((spearman(&x, &y).unwrap() - 1.0).abs() < 1e-12);
        let z = [4.0, 3.0, 2.0, 1.0];
        assert!((spearman(&x, &z).unwrap() + 1.0).abs() < 1e-12);
    }

    #[test]
    fn ties_share_ranks() {
        assert_eq!(average_ranks(&[5.0, 1.0, 5.0]), vec![2.5, 1.0, 2.5]);
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn spread_of_values() {
        let [m, sd, min, max] = spread(&[1.0, 3.0]);
        assert_eq!((m, min, max), (2.0, 1.0, 3.0));
        assert!((sd - 2f64.sqrt()).abs() < 1e-12);
        assert!(mean([]).is_nan());
    }
}
