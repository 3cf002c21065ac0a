//! The saturation rule: training has saturated at the first step whose training accuracy is
//! ≥ 0.99, else ≥ 0.95 (the paper's start of grokking, where the circuit comparison begins).

/// The accuracy thresholds, tried in order.
pub const THRESHOLDS: [f64; 2] = [0.99, 0.95];

/// The first step of `points` (`(step, training accuracy)`, in their order; the accuracy `None`
/// or NaN where unknown) whose accuracy reaches a threshold of [`THRESHOLDS`], with that
/// threshold; `None` when no step reaches 0.95.
pub fn first_saturated(
    points: impl IntoIterator<Item = (u64, Option<f64>)> + Clone,
) -> Option<(u64, f64)> {
    THRESHOLDS.into_iter().find_map(|threshold| {
        points
            .clone()
            .into_iter()
            .find(|(_, a)| a.is_some_and(|a| a >= threshold))
            .map(|(step, _)| (step, threshold))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_099_then_095() {
        let acc = [0.5, 0.96, 0.97, 0.995];
        let points = |n: usize| (0..n).map(|s| (s as u64, Some(acc[s])));
        assert_eq!(first_saturated(points(4)), Some((3, 0.99)));
        assert_eq!(first_saturated(points(3)), Some((1, 0.95)));
        assert_eq!(first_saturated(points(1)), None);
    }
}
