//! Seeded randomness: independent ChaCha8 streams per purpose, and the paper's `choose`.

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// What a random stream is used for. Each purpose (and each head or attribute within it) gets
/// its own stream, so parallel work and the order of steps never change the data.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    /// Composition: relations and tails of each head.
    Graph = 1,
    /// Composition: which atomic facts are OOD.
    OodFacts = 2,
    /// Composition: ID-test draws for the chains of one head.
    Chains = 3,
    /// Sampling the training inferred facts (index = which pool).
    TrainSample = 4,
    /// Sampling the probe sets of test.json (index = which probe set).
    Probes = 5,
    /// Comparison/complex: the attribute values of all entities.
    Values = 6,
    /// Comparison/complex: the OOD entities of one attribute.
    OodEntities = 7,
    /// Comparison/complex: ID-test draws for the pairs of one attribute.
    Pairs = 8,
    /// Complex: sampling `test_hard` queries (index = label).
    Hard = 9,
}

/// The random stream for `purpose` and `index` (a head, an attribute or a sub-purpose).
pub(crate) fn stream(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((purpose as u64) << 48) | (index & ((1 << 48) - 1)));
    rng
}

/// Python's `round` (half to even), used by the paper for every count derived from a ratio.
pub(crate) fn count_for_ratio(ratio: f64, len: usize) -> usize {
    (ratio * len as f64).round_ties_even() as usize
}

/// The paper's `choose(arr, k)` on indices: `k` distinct indices of `0..n` in random order, or
/// all of `0..n` in order when `k >= n`.
pub(crate) fn choose_indices<R: Rng + ?Sized>(rng: &mut R, n: u64, k: u64) -> Vec<u64> {
    if k >= n {
        return (0..n).collect();
    }
    // A partial Fisher–Yates shuffle of the virtual array 0..n: a dense table when n is
    // comparable to k, a map of the displaced entries when n is much larger. Both consume the
    // same draws and give the same result.
    if n <= 16 * k + 65_536 && n <= u32::MAX as u64 {
        let mut table: Vec<u32> = (0..n as u32).collect();
        (0..k)
            .map(|i| {
                let j = rng.gen_range(i..n);
                table.swap(i as usize, j as usize);
                table[i as usize] as u64
            })
            .collect()
    } else {
        let mut displaced: HashMap<u64, u64> = HashMap::with_capacity(k as usize);
        (0..k)
            .map(|i| {
                let j = rng.gen_range(i..n);
                let at_j = displaced.get(&j).copied().unwrap_or(j);
                let at_i = displaced.get(&i).copied().unwrap_or(i);
                displaced.insert(j, at_i);
                at_j
            })
            .collect()
    }
}

/// The paper's `choose(items, k)`: `k` items in random order, or all of them when `k >= len`.
pub(crate) fn choose<T: Clone, R: Rng + ?Sized>(rng: &mut R, items: &[T], k: usize) -> Vec<T> {
    choose_indices(rng, items.len() as u64, k as u64)
        .into_iter()
        .map(|i| items[i as usize].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A plain partial Fisher–Yates shuffle over a full table, the reference for both paths.
    fn reference(seed: u64, n: u64, k: u64) -> Vec<u64> {
        let mut rng = stream(seed, Purpose::Probes, 0);
        let mut table: Vec<u64> = (0..n).collect();
        (0..k)
            .map(|i| {
                let j = rng.gen_range(i..n);
                table.swap(i as usize, j as usize);
                table[i as usize]
            })
            .collect()
    }

    #[test]
    fn dense_and_sparse_shuffles_match_the_reference() {
        for (n, k) in [(1_000u64, 100u64), (1_000_000, 100)] {
            let got = choose_indices(&mut stream(7, Purpose::Probes, 0), n, k);
            assert_eq!(got, reference(7, n, k));
            assert_eq!(got.iter().collect::<HashSet<_>>().len(), k as usize);
        }
    }

    #[test]
    fn choose_all_keeps_order_and_rounding_is_pythons() {
        assert_eq!(
            choose_indices(&mut stream(1, Purpose::Probes, 0), 5, 9),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(count_for_ratio(0.5, 5), 2);
        assert_eq!(count_for_ratio(0.5, 7), 4);
        assert_eq!(count_for_ratio(7.2, 38_000), 273_600);
    }

    #[test]
    fn streams_differ_by_purpose_and_index() {
        let a: u64 = stream(1, Purpose::Chains, 0).gen();
        let b: u64 = stream(1, Purpose::Chains, 1).gen();
        let c: u64 = stream(1, Purpose::Pairs, 0).gen();
        let d: u64 = stream(1, Purpose::Chains, 0).gen();
        assert!(a != b && a != c && a == d);
    }
}
