//! The paper's JSON files, written byte for byte the way Python's `json.dump` writes them
//! (one line, `", "` and `": "` separators, non-ASCII escaped), and read with serde.

use crate::example::Example;
use crate::vocab::Vocab;
use rayon::prelude::*;
use serde::Deserialize;
use std::borrow::Cow;

/// One record of train.json, valid.json or test.json as stored; other keys (such as the
/// `model_output` of the paper's `all_items.json`) are ignored.
#[derive(Deserialize)]
pub(crate) struct RawRecord<'a> {
    #[serde(borrow)]
    pub input_text: Cow<'a, str>,
    #[serde(borrow)]
    pub target_text: Cow<'a, str>,
    #[serde(default, borrow, rename = "type")]
    pub split: Option<Cow<'a, str>>,
}

/// Appends the body of `s` as a JSON string (no quotes), escaped like Python's `ensure_ascii`.
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
        }
    }
}

/// A JSON list of strings, e.g. vocab.json.
pub(crate) fn render_strings(items: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * 10 + 2);
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.push(b'"');
        push_escaped(&mut out, item);
        out.push(b'"');
    }
    out.push(b']');
    out
}

/// A list of records: `{"input_text": …, "target_text": …[, "type": …]}`. The `type` is left
/// out when the example's split is `file_split`, the name records without a type are given.
pub(crate) fn render_records(examples: &[Example], vocab: &Vocab, file_split: &str) -> Vec<u8> {
    let escaped: Vec<Vec<u8>> = (0..vocab.len() as u32)
        .map(|id| {
            let mut e = Vec::new();
            push_escaped(&mut e, vocab.token(id));
            e
        })
        .collect();
    let render_chunk = |chunk: &[Example]| {
        let mut out = Vec::with_capacity(chunk.len() * 96);
        for ex in chunk {
            out.extend_from_slice(b"{\"input_text\": \"");
            for &t in ex.prompt() {
                out.extend_from_slice(&escaped[t as usize]);
            }
            out.extend_from_slice(b"\", \"target_text\": \"");
            for &t in &ex.tokens {
                out.extend_from_slice(&escaped[t as usize]);
            }
            out.push(b'"');
            if ex.split != file_split {
                out.extend_from_slice(b", \"type\": \"");
                push_escaped(&mut out, &ex.split);
                out.push(b'"');
            }
            out.extend_from_slice(b"}, ");
        }
        out
    };
    let chunks: Vec<Vec<u8>> = examples.par_chunks(8192).map(render_chunk).collect();
    let mut out = Vec::with_capacity(chunks.iter().map(Vec::len).sum::<usize>() + 2);
    out.push(b'[');
    for chunk in &chunks {
        out.extend_from_slice(chunk);
    }
    if !examples.is_empty() {
        out.truncate(out.len() - 2);
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_python_ensure_ascii() {
        let mut out = Vec::new();
        push_escaped(&mut out, "a\"b\\c\n\u{1}é😀");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\\"b\\\\c\\n\\u0001\\u00e9\\ud83d\\ude00"
        );
        assert_eq!(render_strings(&[]), b"[]");
        assert_eq!(
            render_strings(&["<a>".into(), "<b>".into()]),
            b"[\"<a>\", \"<b>\"]"
        );
    }
}
