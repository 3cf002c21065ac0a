//! What each prompt position is, the role of each token of an example, and the paper's
//! corruption rules for causal tracing (§5.1, §5.2), generalised to k hops for composition.

use crate::dataset::Dataset;
use crate::error::{Result, TaskError};
use crate::example::{Example, TaskKind};
use crate::facts::{atomic_key, comparison_operands, Facts};
use rand::Rng;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Names of the prompt positions of a `kind` prompt of `prompt_len` tokens:
/// composition `h, r1, …, rK`; comparison `e, a` (atomic) or `a, q, e1, mask, e2`; complex
/// `q, e, a, mask, q_end` (atomic) or `a, q, e1, mask, e2, q_end`. Other lengths: `p0, p1, …`.
pub fn position_names(kind: TaskKind, prompt_len: usize) -> Vec<String> {
    let fixed: &[&str] = match (kind, prompt_len) {
        (TaskKind::Composition { .. }, n) if n >= 1 => {
            return std::iter::once("h".to_string())
                .chain((1..n).map(|i| format!("r{i}")))
                .collect();
        }
        (TaskKind::Comparison, 2) => &["e", "a"],
        (TaskKind::Comparison, 5) => &["a", "q", "e1", "mask", "e2"],
        (TaskKind::Complex, 5) => &["q", "e", "a", "mask", "q_end"],
        (TaskKind::Complex, 6) => &["a", "q", "e1", "mask", "e2", "q_end"],
        _ => return (0..prompt_len).map(|i| format!("p{i}")).collect(),
    };
    fixed.iter().map(|s| s.to_string()).collect()
}

/// Names of the model-input positions `0..=answer_pos` of an example whose prompt has
/// `prompt_len` tokens: the prompt's [`position_names`], then `open` for complex's `<a>` token
/// and `p{i}` beyond.
pub fn input_position_names(kind: TaskKind, prompt_len: usize, answer_pos: usize) -> Vec<String> {
    let mut names = position_names(kind, prompt_len);
    names.truncate(answer_pos + 1);
    for i in names.len()..=answer_pos {
        names.push(if i == prompt_len && kind == TaskKind::Complex {
            "open".to_string()
        } else {
            format!("p{i}")
        });
    }
    names
}

/// The roles the paper's corruption rules apply to in an inferred prompt of `kind`
/// (§5.1, §5.2): composition `h, r1, …, rk`; comparison and complex `a, e1, e2`.
pub fn corruptible_roles(kind: TaskKind) -> Vec<String> {
    match kind {
        TaskKind::Composition { hops } => std::iter::once("h".to_string())
            .chain((1..=hops).map(|i| format!("r{i}")))
            .collect(),
        TaskKind::Comparison | TaskKind::Complex => ["a", "e1", "e2"].map(String::from).to_vec(),
    }
}

/// Names of the three comparison label roles, in label order (`<`, `=`, `>`).
pub const LABEL_ROLES: [&str; 3] = ["label0", "label1", "label2"];

/// Where the paper reads each intermediate role of an inferred prompt with the logit lens, as
/// `(role, position)`: composition (k hops) each bridge `b_i` at `r_i` and `r_k` at `r_k`;
/// comparison and complex `v1` at `e1`, `v2` at `e2` and the three labels at `a`.
pub fn lens_readings(kind: TaskKind) -> Vec<(String, String)> {
    let pair = |role: String, position: String| (role, position);
    match kind {
        TaskKind::Composition { hops } => (1..hops)
            .map(|i| pair(format!("b{i}"), format!("r{i}")))
            .chain(std::iter::once(pair(
                format!("r{hops}"),
                format!("r{hops}"),
            )))
            .collect(),
        TaskKind::Comparison | TaskKind::Complex => [("v1", "e1"), ("v2", "e2")]
            .into_iter()
            .chain(LABEL_ROLES.map(|l| (l, "a")))
            .map(|(r, p)| pair(r.into(), p.into()))
            .collect(),
    }
}

/// Token id of each role of `ex`: composition `h, r1…rK, b1…b(K−1), t` (atomic: `h, r1, t`);
/// comparison and complex `a, e1, e2, v1, v2, label` and, when the dataset determines them, the
/// attribute's three labels [`LABEL_ROLES`] (atomic: `e, a, v`). Bridges and values come from
/// the dataset's atomic facts; fails if one is missing.
pub fn roles(ds: &Dataset, ex: &Example) -> Result<BTreeMap<String, u32>> {
    let prompt = ex.prompt();
    if prompt.len() != ds.kind.atomic_prompt_len() && prompt.len() != ds.kind.inferred_prompt_len()
    {
        return Err(TaskError::Invalid(format!(
            "`{}` is not a {} prompt",
            ds.vocab.decode(prompt),
            ds.kind.name()
        )));
    }
    let mut roles = BTreeMap::new();
    match ds.kind {
        TaskKind::Composition { .. } => composition_roles(ds, ex, &mut roles)?,
        TaskKind::Comparison | TaskKind::Complex if ds.kind.is_atomic(prompt.len()) => {
            let (entity, attribute) = atomic_key(ds.kind, prompt);
            for (name, id) in [("e", entity), ("a", attribute), ("v", ex.answer)] {
                roles.insert(name.to_string(), id);
            }
        }
        TaskKind::Comparison | TaskKind::Complex => comparison_roles(ds, ex, &mut roles)?,
    }
    Ok(roles)
}

/// Composition roles of `ex` into `roles`: `h, r1…rK`, the bridges `b1…b(K−1)` the atomic
/// facts lead through, and `t`.
fn composition_roles(ds: &Dataset, ex: &Example, roles: &mut BTreeMap<String, u32>) -> Result<()> {
    let prompt = ex.prompt();
    let mut set = |name: &str, id: u32| {
        roles.insert(name.to_string(), id);
    };
    set("h", prompt[0]);
    for (i, &r) in prompt[1..].iter().enumerate() {
        set(&format!("r{}", i + 1), r);
    }
    let bridges = ds.facts.bridges(prompt[0], &prompt[1..]).ok_or_else(|| {
        TaskError::Invalid(format!(
            "the atomic facts do not cover every hop of `{}`",
            ds.vocab.decode(prompt)
        ))
    })?;
    for (i, &b) in bridges.iter().enumerate() {
        set(&format!("b{}", i + 1), b);
    }
    set("t", ex.answer);
    Ok(())
}

/// Roles of an inferred comparison/complex `ex` into `roles`: `a, e1, e2`, the values `v1, v2`
/// from the atomic facts, `label` and, when the dataset determines them, [`LABEL_ROLES`].
fn comparison_roles(ds: &Dataset, ex: &Example, roles: &mut BTreeMap<String, u32>) -> Result<()> {
    let (attribute, e1, e2) = comparison_operands(ex.prompt());
    let value = |e: u32| {
        ds.facts.value(e, attribute).ok_or_else(|| {
            TaskError::Invalid(format!(
                "no atomic fact gives the value of ({}, {})",
                ds.vocab.token(e),
                ds.vocab.token(attribute)
            ))
        })
    };
    let (v1, v2) = (value(e1)?, value(e2)?);
    let mut set = |name: &str, id: u32| {
        roles.insert(name.to_string(), id);
    };
    set("a", attribute);
    set("e1", e1);
    set("e2", e2);
    set("v1", v1);
    set("v2", v2);
    set("label", ex.answer);
    if let Some(labels) = attribute_labels(ds, attribute) {
        for (name, id) in LABEL_ROLES.iter().zip(labels) {
            set(name, id);
        }
    }
    Ok(())
}

/// The three labels (`<`, `=`, `>`) of `attribute`: from the dataset's facts, else from the
/// vocabulary's `<attr_k_i>` tokens; `None` when either misses one.
fn attribute_labels(ds: &Dataset, attribute: u32) -> Option<[u32; 3]> {
    let orderings = [Ordering::Less, Ordering::Equal, Ordering::Greater];
    let label = |i: usize| {
        ds.facts.label(attribute, orderings[i]).or_else(|| {
            let name = ds.vocab.token(attribute).strip_suffix('>')?;
            ds.vocab.get(&format!("{name}_{i}>"))
        })
    };
    Some([label(0)?, label(1)?, label(2)?])
}

/// A corrupted copy of an example for activation patching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The role that was replaced (`h`, `r1`…, `e1`, `e2`, `a`).
    pub role: String,
    /// The example's tokens with the replacement made (same length; positions after the prompt
    /// are the clean answer tokens and should not be read).
    pub tokens: Vec<u32>,
    /// Prompt positions whose states the paper patches for this role.
    pub patch_positions: Vec<usize>,
    /// Answer of the corrupted prompt under the atomic facts, when they determine one.
    pub answer: Option<u32>,
}

/// The paper's same-type replacement for `role` of `ex`, chosen uniformly with `rng` among the
/// candidates (deterministic given the rng state). Pass `&ds.facts` as `facts`.
///
/// Composition (prompt `h r1 … rK`, answer t):
/// - `h`: a head with ID facts whose chain under r1…rK is undefined or does not end at t;
///   patches position 0.
/// - `ri`: a relation of an ID fact of the entity reached after i−1 hops, such that the chain
///   continued with r(i+1)…rK is undefined or does not end at t; patches position i.
///
/// Comparison and complex (prompt `a q e1 mask e2`, values v1, v2):
/// - `e1`: another ID entity of attribute a whose value is v2 if v1 ≠ v2, else v2 ± 1, so the
///   label changes; patches positions 2 and 3 (e1 and `<mask>`).
/// - `e2`: symmetric (value v1, else v1 ± 1); patches position 4.
/// - `a`: any other attribute with ID facts; patches positions 0 and 1.
///
/// Returns None for an unknown role, an atomic example, or when no candidate exists.
pub fn corrupt<R: Rng + ?Sized>(
    ds: &Dataset,
    facts: &Facts,
    ex: &Example,
    role: &str,
    rng: &mut R,
) -> Option<Corruption> {
    let prompt = ex.prompt();
    if ds.kind.is_atomic(prompt.len()) || prompt.len() != ds.kind.inferred_prompt_len() {
        return None;
    }
    let (position, replacement, patch_positions) = match ds.kind {
        TaskKind::Composition { .. } => {
            let (position, candidates) = composition_candidates(facts, prompt, ex.answer, role)?;
            (position, pick(&candidates, rng)?, vec![position])
        }
        TaskKind::Comparison | TaskKind::Complex => {
            let (attribute, e1, e2) = comparison_operands(prompt);
            match role {
                "e1" => {
                    let candidates = entity_candidates(facts, attribute, e1, e2)?;
                    (2, pick(&candidates, rng)?, vec![2, 3])
                }
                "e2" => {
                    let candidates = entity_candidates(facts, attribute, e2, e1)?;
                    (4, pick(&candidates, rng)?, vec![4])
                }
                "a" => {
                    let others: Vec<u32> = facts
                        .id_attributes()
                        .into_iter()
                        .filter(|&a| a != attribute)
                        .collect();
                    (0, pick(&others, rng)?, vec![0, 1])
                }
                _ => return None,
            }
        }
    };
    let mut tokens = ex.tokens.clone();
    tokens[position] = replacement;
    let corrupted = &tokens[..prompt.len()];
    let answer = match ds.kind {
        TaskKind::Composition { .. } => facts.follow(corrupted[0], &corrupted[1..]),
        TaskKind::Comparison | TaskKind::Complex => {
            let (attribute, e1, e2) = comparison_operands(corrupted);
            facts
                .ordering(attribute, e1, e2)
                .and_then(|o| facts.label(attribute, o))
        }
    };
    Some(Corruption {
        role: role.to_string(),
        tokens,
        patch_positions,
        answer,
    })
}

/// Composition: the replaced position and the candidate tokens for `role`.
fn composition_candidates(
    facts: &Facts,
    prompt: &[u32],
    answer: u32,
    role: &str,
) -> Option<(usize, Vec<u32>)> {
    let (head, relations) = (prompt[0], &prompt[1..]);
    if role == "h" {
        let heads = facts
            .id_heads()
            .into_iter()
            .filter(|&h| h != head && facts.follow(h, relations) != Some(answer))
            .collect();
        return Some((0, heads));
    }
    let hop: usize = role.strip_prefix('r')?.parse().ok()?;
    if hop == 0 || hop > relations.len() {
        return None;
    }
    let from = facts.follow(head, &relations[..hop - 1])?;
    let rest = &relations[hop..];
    let candidates = facts
        .id_edges(from)
        .iter()
        .filter(|&&(r, tail)| r != relations[hop - 1] && facts.follow(tail, rest) != Some(answer))
        .map(|&(r, _)| r)
        .collect();
    Some((hop, candidates))
}

/// Comparison: ID entities of `attribute` other than `replaced` whose value makes the label
/// change: the value of `other` if the two values differ, else one step above or below it.
fn entity_candidates(facts: &Facts, attribute: u32, replaced: u32, other: u32) -> Option<Vec<u32>> {
    let number = |e: u32| facts.value_number(facts.value(e, attribute)?);
    let (mine, theirs) = (number(replaced)?, number(other)?);
    let wanted: Vec<i64> = if mine == theirs {
        vec![theirs - 1, theirs + 1]
    } else {
        vec![theirs]
    };
    Some(
        facts
            .id_values(attribute)
            .iter()
            .filter(|&&(e, v)| {
                e != replaced && facts.value_number(v).is_some_and(|n| wanted.contains(&n))
            })
            .map(|&(e, _)| e)
            .collect(),
    )
}

/// A uniformly chosen element, or None if there is none.
fn pick<R: Rng + ?Sized>(candidates: &[u32], rng: &mut R) -> Option<u32> {
    if candidates.is_empty() {
        return None;
    }
    Some(candidates[rng.gen_range(0..candidates.len())])
}
