//! Task kinds and tokenised examples: prompt, answer, and the positions whose loss counts.

use crate::vocab::{SpecialIds, Vocab};

/// Which of the paper's tasks a dataset holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// `<h><r1>…<rK>` → tail entity; atomic facts are `<h><r>`.
    Composition { hops: usize },
    /// `<a><q><e1><mask><e2>` → label; atomic facts are `<e><a>` → value.
    Comparison,
    /// `<a><q><e1><mask><e2></q>` → `<a>` label; atomic facts `<q><e><a><mask></q>` → `<a>` value.
    Complex,
}

impl TaskKind {
    /// Lower-case name: `composition`, `comparison` or `complex`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Composition { .. } => "composition",
            TaskKind::Comparison => "comparison",
            TaskKind::Complex => "complex",
        }
    }

    /// Prompt length (tokens) of an atomic fact: 2, or 5 for complex.
    pub fn atomic_prompt_len(&self) -> usize {
        match self {
            TaskKind::Composition { .. } | TaskKind::Comparison => 2,
            TaskKind::Complex => 5,
        }
    }

    /// Prompt length (tokens) of an inferred fact: hops + 1, 5 (comparison) or 6 (complex).
    pub fn inferred_prompt_len(&self) -> usize {
        match self {
            TaskKind::Composition { hops } => hops + 1,
            TaskKind::Comparison => 5,
            TaskKind::Complex => 6,
        }
    }

    /// True if a prompt of `prompt_len` tokens is an atomic fact of this kind.
    pub fn is_atomic(&self, prompt_len: usize) -> bool {
        prompt_len == self.atomic_prompt_len()
    }

    /// What a record of this kind looks like, for error messages.
    fn shape(&self) -> String {
        match self {
            TaskKind::Composition { hops } => {
                format!("<head><relation> or <head> and {hops} relations, then <answer></a>")
            }
            TaskKind::Comparison => {
                "<entity><attribute> or <attribute><q><entity><mask><entity>, then <answer></a>"
                    .to_string()
            }
            TaskKind::Complex => "<q><entity><attribute><mask></q> or \
                <attribute><q><entity><mask><entity></q>, then <a><answer></a>"
                .to_string(),
        }
    }
}

/// One tokenised record of train.json, valid.json or test.json.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// The paper's `type` (train_inferred, test_inferred_iid, id_atomic, …); records without one
    /// take the file's name: `train`, `valid` or `test`.
    pub split: String,
    /// Token ids of the whole `target_text`: prompt, answer (complex: `<a>` answer), `</a>`.
    pub tokens: Vec<u32>,
    /// Number of `input_text` tokens.
    pub prompt_len: usize,
    /// Position whose next-token prediction is the answer: prompt_len − 1 (complex: prompt_len,
    /// the `<a>` position).
    pub answer_pos: usize,
    /// Gold answer token id.
    pub answer: u32,
    /// Positions whose next-token loss counts: the answer and `</a>` (complex also `<a>`).
    pub loss_positions: Vec<usize>,
}

/// Ids that frame an answer: `<a>` before it (complex only) and `</a>` after it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AnswerFrame {
    pub open: Option<u32>,
    pub close: u32,
}

impl Example {
    /// The `input_text` token ids.
    pub fn prompt(&self) -> &[u32] {
        &self.tokens[..self.prompt_len]
    }

    /// Builds an example from a prompt and its answer.
    pub(crate) fn build(split: String, prompt: &[u32], answer: u32, frame: AnswerFrame) -> Example {
        let prompt_len = prompt.len();
        let mut tokens = Vec::with_capacity(prompt_len + 3);
        tokens.extend_from_slice(prompt);
        tokens.extend(frame.open);
        tokens.push(answer);
        tokens.push(frame.close);
        let answer_pos = tokens.len() - 3;
        Example {
            split,
            tokens,
            prompt_len,
            answer_pos,
            answer,
            loss_positions: (prompt_len - 1..answer_pos + 2).collect(),
        }
    }

    /// Reads an example from the ids of its `target_text` and the length of its `input_text`,
    /// checking that it has the shape of a record of `kind` (`ids`: the special tokens of
    /// `vocab`). The error says what is wrong.
    pub(crate) fn parse(
        kind: TaskKind,
        split: String,
        target: Vec<u32>,
        prompt_len: usize,
        vocab: &Vocab,
        ids: &SpecialIds,
    ) -> Result<Example, String> {
        let frame = AnswerFrame {
            open: if kind == TaskKind::Complex {
                ids.answer_open
            } else {
                None
            },
            close: ids.answer_close.ok_or("the vocabulary has no `</a>`")?,
        };
        let wrong_shape = || {
            format!(
                "`{}` does not have the shape of a {} record ({})",
                vocab.decode(&target),
                kind.name(),
                kind.shape()
            )
        };
        let answer_pos = prompt_len + usize::from(frame.open.is_some());
        let framed = target.len() == answer_pos + 2
            && (frame.open.is_none() || target.get(prompt_len) == frame.open.as_ref())
            && target.last() == Some(&frame.close)
            && !ids.is_special(target[answer_pos]);
        if !framed || !prompt_has_shape(kind, &target[..prompt_len], ids) {
            return Err(wrong_shape());
        }
        let answer = target[answer_pos];
        Ok(Example::build(split, &target[..prompt_len], answer, frame))
    }
}

/// True if `prompt` is an atomic or inferred prompt of `kind` (for composition, a query of at
/// most `hops` hops: mixed-hop datasets hold shorter ones too).
fn prompt_has_shape(kind: TaskKind, prompt: &[u32], ids: &SpecialIds) -> bool {
    let plain = |i: usize| !ids.is_special(prompt[i]);
    let is = |i: usize, id: Option<u32>| id.is_some() && Some(prompt[i]) == id;
    match (kind, prompt.len()) {
        (TaskKind::Composition { hops }, n) => (2..=hops + 1).contains(&n) && (0..n).all(plain),
        (TaskKind::Comparison, 2) => plain(0) && plain(1),
        (TaskKind::Comparison, 5) => {
            plain(0) && is(1, ids.question_open) && plain(2) && is(3, ids.mask) && plain(4)
        }
        (TaskKind::Complex, 5) => {
            is(0, ids.question_open)
                && plain(1)
                && plain(2)
                && is(3, ids.mask)
                && is(4, ids.question_close)
        }
        (TaskKind::Complex, 6) => {
            plain(0)
                && is(1, ids.question_open)
                && plain(2)
                && is(3, ids.mask)
                && plain(4)
                && is(5, ids.question_close)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::SPECIAL_TOKENS;

    fn vocab() -> Vocab {
        let mut tokens: Vec<String> = ["<e_0>", "<e_1>", "<r_0>", "<attr_0>", "<3>"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        tokens.extend(SPECIAL_TOKENS.iter().map(|t| t.to_string()));
        Vocab::from_tokens(tokens).unwrap()
    }

    /// Parses the record `target` whose first `prompt_len` tokens are the prompt.
    fn parse(kind: TaskKind, target: &str, prompt_len: usize) -> Result<Example, String> {
        let v = vocab();
        let ids = SpecialIds::of(&v);
        Example::parse(
            kind,
            "t".into(),
            v.encode(target).unwrap(),
            prompt_len,
            &v,
            &ids,
        )
    }

    #[test]
    fn composition_loss_positions_are_answer_and_end() {
        let v = vocab();
        let ex = parse(
            TaskKind::Composition { hops: 2 },
            "<e_0><r_0><r_0><e_1></a>",
            3,
        )
        .unwrap();
        assert_eq!((ex.answer_pos, ex.answer), (2, v.id("<e_1>").unwrap()));
        assert_eq!(ex.loss_positions, vec![2, 3]);
        assert_eq!(ex.prompt(), &v.encode("<e_0><r_0><r_0>").unwrap()[..]);
    }

    #[test]
    fn complex_answer_follows_the_open_tag() {
        let ex = parse(TaskKind::Complex, "<q><e_0><attr_0><mask></q><a><3></a>", 5).unwrap();
        assert_eq!(ex.answer_pos, 5);
        assert_eq!(ex.loss_positions, vec![4, 5, 6]);
        assert_eq!(ex.answer, vocab().id("<3>").unwrap());
    }

    #[test]
    fn wrong_shapes_are_named() {
        let err = parse(TaskKind::Composition { hops: 2 }, "<e_0><q><e_1></a>", 2).unwrap_err();
        assert!(err.contains("composition record"), "{err}");
        let comparison = "<attr_0><q><e_0><mask><e_1><3></a>";
        assert!(parse(TaskKind::Comparison, comparison, 5).is_ok());
        assert!(parse(TaskKind::Complex, comparison, 5).is_err());
    }
}
