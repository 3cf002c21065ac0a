//! Token vocabulary: one token per symbol, id 0 is the padding token, then the tokens of
//! `vocab.json` in file order.

use crate::error::{Result, TaskError};
use std::collections::HashMap;

/// The padding token; always id 0, never written to `vocab.json`.
pub const PAD: &str = "<pad>";

/// The paper's special tokens, appended to every vocabulary in this order.
pub const SPECIAL_TOKENS: [&str; 6] = ["<mask>", "<sep>", "<a>", "</a>", "<q>", "</q>"];

/// Index of each special token within [`SPECIAL_TOKENS`], for generators that lay out ids.
pub(crate) mod special {
    pub const MASK: u32 = 0;
    pub const ANSWER_OPEN: u32 = 2;
    pub const ANSWER_CLOSE: u32 = 3;
    pub const QUESTION_OPEN: u32 = 4;
    pub const QUESTION_CLOSE: u32 = 5;
}

/// Token strings and their ids. Every token has the form `<...>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    /// Token string of each id; index 0 is [`PAD`].
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// Builds a vocabulary from the tokens of a `vocab.json`, in order; `<pad>` is prepended.
    /// Fails on a duplicate token, a token that is not `<...>`, or `<pad>` itself.
    pub fn from_tokens(file_tokens: Vec<String>) -> Result<Vocab> {
        let mut tokens = Vec::with_capacity(file_tokens.len() + 1);
        tokens.push(PAD.to_string());
        tokens.extend(file_tokens);
        if u32::try_from(tokens.len()).is_err() {
            return Err(TaskError::Invalid(format!(
                "{} tokens do not fit in 32-bit ids",
                tokens.len()
            )));
        }
        let mut ids = HashMap::with_capacity(tokens.len());
        for (id, token) in tokens.iter().enumerate() {
            let well_formed = token.len() >= 3
                && token.starts_with('<')
                && token.ends_with('>')
                && !token[1..token.len() - 1].contains(['<', '>']);
            if !well_formed {
                return Err(TaskError::Invalid(format!(
                    "token {} (`{token}`) is not of the form <name>",
                    id
                )));
            }
            if let Some(first) = ids.insert(token.clone(), id as u32) {
                let what = if first == 0 {
                    "is reserved for padding".to_string()
                } else {
                    format!("repeats token {first}")
                };
                return Err(TaskError::Invalid(format!("token {id} (`{token}`) {what}")));
            }
        }
        Ok(Vocab { tokens, ids })
    }

    /// Number of ids, padding included (= rows of an embedding table).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always false: a vocabulary holds at least the padding token.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Id of `token`, or an "unknown token" error.
    pub fn id(&self, token: &str) -> Result<u32> {
        self.get(token)
            .ok_or_else(|| TaskError::Invalid(format!("unknown token `{token}`")))
    }

    /// Id of `token`, if it is in the vocabulary.
    pub fn get(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Every token string in id order (`<pad>` first).
    pub fn tokens(&self) -> Vec<&str> {
        self.tokens.iter().map(String::as_str).collect()
    }

    /// Token string of `id`. Panics if `id >= self.len()` (ids come from this vocabulary).
    pub fn token(&self, id: u32) -> &str {
        &self.tokens[id as usize]
    }

    /// Id of the padding token (0).
    pub fn pad_id(&self) -> u32 {
        0
    }

    /// The tokens as listed in `vocab.json` (every token but padding), in id order from 1.
    pub fn file_tokens(&self) -> &[String] {
        &self.tokens[1..]
    }

    /// Splits `text` (a concatenation of `<...>` tokens, no separators) into ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(8);
        let mut rest = text;
        while !rest.is_empty() {
            let end = match (rest.starts_with('<'), rest.find('>')) {
                (true, Some(end)) => end,
                _ => {
                    return Err(TaskError::Invalid(format!(
                        "`{text}` is not a sequence of <...> tokens (stuck at `{rest}`)"
                    )))
                }
            };
            ids.push(self.id(&rest[..=end])?);
            rest = &rest[end + 1..];
        }
        Ok(ids)
    }

    /// Concatenates the token strings of `ids` (the inverse of [`Vocab::encode`]).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().map(|&id| self.token(id)).collect()
    }
}

/// Ids of the special tokens that give a record its shape; `None` when absent from the vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpecialIds {
    pub mask: Option<u32>,
    pub answer_open: Option<u32>,
    pub answer_close: Option<u32>,
    pub question_open: Option<u32>,
    pub question_close: Option<u32>,
}

impl SpecialIds {
    pub(crate) fn of(vocab: &Vocab) -> SpecialIds {
        SpecialIds {
            mask: vocab.get("<mask>"),
            answer_open: vocab.get("<a>"),
            answer_close: vocab.get("</a>"),
            question_open: vocab.get("<q>"),
            question_close: vocab.get("</q>"),
        }
    }

    /// True if `id` is one of the special tokens (or padding).
    pub(crate) fn is_special(&self, id: u32) -> bool {
        id == 0
            || [
                self.mask,
                self.answer_open,
                self.answer_close,
                self.question_open,
                self.question_close,
            ]
            .contains(&Some(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> Result<Vocab> {
        Vocab::from_tokens(tokens.iter().map(|t| t.to_string()).collect())
    }

    #[test]
    fn pad_is_id_zero_then_file_order() {
        let v = vocab(&["<e_0>", "<r_0>", "</a>"]).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v.token(0), PAD);
        assert_eq!(v.id("<r_0>").unwrap(), 2);
        assert_eq!(v.encode("<e_0><r_0></a>").unwrap(), vec![1, 2, 3]);
        assert_eq!(v.decode(&[1, 2, 3]), "<e_0><r_0></a>");
    }

    #[test]
    fn rejects_duplicates_pad_and_malformed_tokens() {
        assert!(vocab(&["<e_0>", "<e_0>"]).is_err());
        assert!(vocab(&["<pad>"]).is_err());
        assert!(vocab(&["e_0"]).is_err());
        assert!(vocab(&["<e<0>"]).is_err());
    }

    #[test]
    fn encode_names_unknown_tokens() {
        let v = vocab(&["<e_0>"]).unwrap();
        let err = v.encode("<e_0><e_1>").unwrap_err().to_string();
        assert!(err.contains("`<e_1>`"), "{err}");
        assert!(v.encode("<e_0>x").is_err());
        assert!(v.encode("<e_0").is_err());
    }
}
