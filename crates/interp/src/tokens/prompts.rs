//! Prompt files: one JSON object per line with the clean tokens, optionally the corrupted
//! tokens, the answer and alternative tokens and the answer position, read into a
//! [`PromptBatch`].
//!
//! ```text
//! {"clean": ["e12", "r3", "r7"], "corrupted": ["e40", "r3", "r7"], "answer": "e5", "alternative": ["e9"]}
//! {"clean": "e2 r3 r1", "answer": ["e8", "e11"], "answer_pos": 2}
//! ```
//!
//! Tokens are the model's token strings (a list, or one string split at whitespace) or integer
//! ids. `answer` and `alternative` take one token or a list (a set: the metric reads the set's
//! mean logit, total probability or best rank); `answer_pos` defaults to the last token. Prompts
//! of different lengths are right-padded with their own last token, which causal attention never
//! lets reach an earlier answer position.

use super::PromptBatch;
use crate::error::{InterpError, Result};
use crate::metric::TokenSets;
use serde_json::Value;
use std::path::Path;
use tch::Tensor;

/// One prompt of a file, as token ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub clean: Vec<i64>,
    pub corrupted: Option<Vec<i64>>,
    pub answer: Vec<i64>,
    pub alternative: Vec<i64>,
    pub answer_pos: Option<i64>,
}

/// Reads a prompt file; `lookup` maps a token string to its id. Every line must parse, name
/// known tokens and have an answer; the corrupted tokens are given for every prompt or none.
pub fn read_prompts(path: &Path, lookup: &dyn Fn(&str) -> Option<i64>) -> Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).map_err(|source| InterpError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| {
            InterpError::spec(
                "prompt file",
                format!("{}:{}", path.display(), i + 1),
                reason,
            )
        };
        let value: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        prompts.push(parse_prompt(&value, lookup).map_err(bad)?);
    }
    if prompts.is_empty() {
        return Err(InterpError::spec(
            "prompt file",
            path.display().to_string(),
            "holds no prompts",
        ));
    }
    let with_corrupted = prompts.iter().filter(|p| p.corrupted.is_some()).count();
    if with_corrupted != 0 && with_corrupted != prompts.len() {
        return Err(InterpError::spec(
            "prompt file",
            path.display().to_string(),
            format!(
                "{with_corrupted} of {} prompts have corrupted tokens: give them for all or none",
                prompts.len()
            ),
        ));
    }
    Ok(prompts)
}

/// One line's prompt.
fn parse_prompt(
    value: &Value,
    lookup: &dyn Fn(&str) -> Option<i64>,
) -> std::result::Result<Prompt, String> {
    let field = |name: &str| value.get(name).filter(|v| !v.is_null());
    let clean = tokens(field("clean").ok_or("no \"clean\" tokens")?, lookup)?;
    let corrupted = field("corrupted").map(|v| tokens(v, lookup)).transpose()?;
    if let Some(c) = &corrupted {
        if c.len() != clean.len() {
            return Err(format!(
                "corrupted has {} tokens, clean {}",
                c.len(),
                clean.len()
            ));
        }
    }
    let answer = tokens(field("answer").ok_or("no \"answer\" token")?, lookup)?;
    let alternative = field("alternative")
        .map(|v| tokens(v, lookup))
        .transpose()?
        .unwrap_or_default();
    let answer_pos = match field("answer_pos") {
        None => None,
        Some(v) => match v.as_i64() {
            Some(p) if (0..clean.len() as i64).contains(&p) => Some(p),
            _ => {
                return Err(format!(
                    "answer_pos {v} is not a position of the {} clean tokens",
                    clean.len()
                ))
            }
        },
    };
    if clean.is_empty() || answer.is_empty() {
        return Err("empty clean tokens or answer".into());
    }
    Ok(Prompt {
        clean,
        corrupted,
        answer,
        alternative,
        answer_pos,
    })
}

/// Token ids of a JSON value: an id, a token string, a whitespace-separated string or a list.
fn tokens(
    value: &Value,
    lookup: &dyn Fn(&str) -> Option<i64>,
) -> std::result::Result<Vec<i64>, String> {
    match value {
        Value::Array(items) => items.iter().map(|v| one_token(v, lookup)).collect(),
        Value::String(s) => s
            .split_whitespace()
            .map(|t| one_token(&Value::String(t.into()), lookup))
            .collect(),
        other => one_token(other, lookup).map(|t| vec![t]),
    }
}

fn one_token(
    value: &Value,
    lookup: &dyn Fn(&str) -> Option<i64>,
) -> std::result::Result<i64, String> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .filter(|&id| id >= 0)
            .ok_or(format!("bad token id {n}")),
        Value::String(s) => lookup(s).ok_or(format!("unknown token {s:?}")),
        other => Err(format!("a token must be a string or an id, got {other}")),
    }
}

/// The prompts as one batch, right-padded to the longest prompt with each row's last token.
pub fn batch_of(prompts: &[Prompt]) -> Result<PromptBatch> {
    let width = prompts.iter().map(|p| p.clean.len()).max().unwrap_or(0);
    let pad = |row: &[i64]| -> Vec<i64> {
        let last = *row.last().unwrap_or(&0);
        row.iter()
            .copied()
            .chain(std::iter::repeat(last))
            .take(width)
            .collect()
    };
    let stack = |rows: Vec<Vec<i64>>| {
        Tensor::from_slice(&rows.concat()).view([prompts.len() as i64, width as i64])
    };
    let clean = stack(prompts.iter().map(|p| pad(&p.clean)).collect());
    let corrupted = prompts
        .iter()
        .map(|p| p.corrupted.as_deref().map(pad))
        .collect::<Option<Vec<_>>>()
        .map(stack);
    let answer_pos = prompts
        .iter()
        .map(|p| p.answer_pos.unwrap_or(p.clean.len() as i64 - 1))
        .collect();
    let answers: Vec<Vec<i64>> = prompts.iter().map(|p| p.answer.clone()).collect();
    let alternatives: Vec<Vec<i64>> = prompts.iter().map(|p| p.alternative.clone()).collect();
    let sets = TokenSets::from_rows(&answers, &alternatives)?;
    PromptBatch::new(clean, corrupted, Some(answer_pos), sets)
}
