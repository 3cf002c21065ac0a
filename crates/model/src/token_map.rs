//! Which embedding row holds which task token, and over which rows ranks are taken.
//!
//! A grokscope checkpoint's vocabulary is the task's own: row `i` is the dataset's token `i`. The
//! paper's released checkpoints keep GPT-2's vocabulary: 50,257 BPE rows, then the task tokens added
//! in the dataset's `vocab.json` order, then padding to a multiple of 8, with `<pad>` = eos = row
//! 50256. Such a checkpoint records a [`TokenMap`] (token → row) in its metadata under
//! [`TOKEN_ROWS_KEY`]; [`Checkpoint::fit_vocabulary`] then re-rows its (tied) embedding so that row
//! `i` is the dataset's token `i` — followed by every other row when ranks are taken over the whole
//! vocabulary ([`RankOver::All`], what the paper's scripts do), or nothing else ([`RankOver::Task`]).
//!
//! ```no_run
//! use model::token_map::RankOver;
//! let ckpt = model::Checkpoint::load("paper.safetensors", tch::Device::Cpu).unwrap();
//! let dataset_tokens = ["<pad>", "<e_0>", "<r_0>"];
//! let (fitted, rank_over) = ckpt.fit_vocabulary(&dataset_tokens, None).unwrap();
//! assert_eq!(rank_over, RankOver::All); // the default for a checkpoint with a token map
//! # let _ = fitted;
//! ```

use crate::error::{ModelError, Result};
use crate::model_file::Checkpoint;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use tch::{Kind, Tensor};

/// Metadata key holding a checkpoint's [`TokenMap`] as a JSON object `{token: row}`.
pub const TOKEN_ROWS_KEY: &str = "token_rows";

/// Number of GPT-2 BPE rows before the added tokens (`<|endoftext|>` = 50256 is the last).
pub const GPT2_BASE_VOCAB: i64 = 50_257;

/// GPT-2's `<|endoftext|>`, the paper's pad and eos token.
pub const GPT2_EOS: i64 = 50_256;

/// The rows logits are ranked over.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RankOver {
    /// Every row of the unembedding (the paper's scripts: ~52k rows for its checkpoints).
    All,
    /// Only the task's tokens.
    Task,
}

impl fmt::Display for RankOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RankOver::All => "all",
            RankOver::Task => "task",
        })
    }
}

impl FromStr for RankOver {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" => Ok(RankOver::All),
            "task" => Ok(RankOver::Task),
            other => Err(format!("unknown rank universe `{other}` (all, task)")),
        }
    }
}

/// Token → embedding row of a checkpoint whose rows are not the task's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenMap {
    rows: BTreeMap<String, i64>,
}

impl TokenMap {
    /// The map of `rows` (token → row).
    pub fn new(rows: BTreeMap<String, i64>) -> TokenMap {
        TokenMap { rows }
    }

    /// The row of `token`, if the map has it.
    pub fn row(&self, token: &str) -> Option<i64> {
        self.rows.get(token).copied()
    }

    /// The map stored in a checkpoint's metadata, if any.
    pub fn from_metadata(metadata: &BTreeMap<String, String>, path: &Path) -> Result<Option<Self>> {
        let Some(text) = metadata.get(TOKEN_ROWS_KEY) else {
            return Ok(None);
        };
        let rows = serde_json::from_str(text).map_err(|e| {
            ModelError::checkpoint(path, format!("bad `{TOKEN_ROWS_KEY}` metadata: {e}"))
        })?;
        Ok(Some(TokenMap { rows }))
    }

    /// The map as the JSON text stored under [`TOKEN_ROWS_KEY`].
    pub fn to_metadata(&self) -> String {
        serde_json::to_string(&self.rows).expect("a map of strings to integers serialises")
    }

    /// The map of a Hugging Face folder in the paper's layout. `added_tokens.json` (token → id) is
    /// authoritative; without it the task tokens are placed after GPT-2's rows in the order of the
    /// dataset's `vocab.json` (`dataset_tokens`, without `<pad>`). With both, they must agree.
    /// `<pad>` is the config's `pad_token_id` (else `eos_token_id`, else 50256).
    pub fn from_hf_folder(
        dir: &Path,
        config: &Value,
        dataset_tokens: Option<&[String]>,
    ) -> Result<TokenMap> {
        let added = read_added_tokens(dir)?;
        let from_order = dataset_tokens.map(|tokens| {
            let rows = tokens.iter().enumerate();
            rows.map(|(k, t)| (t.clone(), GPT2_BASE_VOCAB + k as i64))
                .collect()
        });
        let mut rows: BTreeMap<String, i64> = match (added, from_order) {
            (Some(added), Some(order)) => check_agreement(dir, added, &order)?,
            (Some(added), None) => added,
            (None, Some(order)) => order,
            (None, None) => {
                return Err(ModelError::checkpoint(
                    dir,
                    "no added_tokens.json: give the dataset (--data DIR) so its vocab.json order places \
                     the task tokens after GPT-2's 50,257 rows",
                ))
            }
        };
        let pad = ["pad_token_id", "eos_token_id"]
            .iter()
            .find_map(|key| config.get(*key).and_then(Value::as_i64))
            .unwrap_or(GPT2_EOS);
        rows.entry("<pad>".to_string()).or_insert(pad);
        Ok(TokenMap { rows })
    }
}

/// `added_tokens.json` of `dir` as token → id, or `None` when the file is absent.
fn read_added_tokens(dir: &Path) -> Result<Option<BTreeMap<String, i64>>> {
    let path = dir.join("added_tokens.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let rows = serde_json::from_str(&text).map_err(|e| {
        ModelError::checkpoint(&path, format!("expected a JSON object of token → id: {e}"))
    })?;
    Ok(Some(rows))
}

/// `added` (from the tokenizer) when it places every dataset token where `order` (the dataset's
/// `vocab.json` order after GPT-2's rows) does; an error naming the first disagreement otherwise.
fn check_agreement(
    dir: &Path,
    added: BTreeMap<String, i64>,
    order: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>> {
    let mut by_row: Vec<(&String, &i64)> = order.iter().collect();
    by_row.sort_by_key(|(_, row)| **row);
    for (token, row) in by_row {
        match added.get(token) {
            Some(got) if got == row => {}
            None => {
                return Err(ModelError::checkpoint(
                    dir.join("added_tokens.json"),
                    format!(
                    "the dataset token `{token}` is not in the checkpoint's vocabulary: not the \
                         dataset this checkpoint was trained on"
                ),
                ))
            }
            Some(got) => {
                let got = format!("id {got}");
                return Err(ModelError::checkpoint(
                    dir.join("added_tokens.json"),
                    format!(
                        "disagrees with the dataset's vocab.json: `{token}` is {got}, the dataset's order \
                         puts it at {row}; these tokenizer files belong to another dataset"
                    ),
                ));
            }
        }
    }
    Ok(added)
}

impl Checkpoint {
    /// This checkpoint with its embedding re-rowed for a dataset whose token `i` is
    /// `dataset_tokens[i]`, and the rank universe used. Without a token map the vocabulary is the
    /// task's own and is returned unchanged ([`RankOver::Task`]: both universes are the same).
    /// With one, `rank_over` defaults to [`RankOver::All`]. Errors: a dataset token the map lacks,
    /// or a row outside the embedding.
    pub fn fit_vocabulary(
        self,
        dataset_tokens: &[&str],
        rank_over: Option<RankOver>,
    ) -> Result<(Checkpoint, RankOver)> {
        let map = TokenMap::from_metadata(&self.metadata, Path::new("checkpoint"))?;
        let Some(map) = map else {
            return Ok((self, RankOver::Task));
        };
        let rank_over = rank_over.unwrap_or(RankOver::All);
        let rows = self.task_rows(&map, dataset_tokens)?;
        let mut order = rows.clone();
        if rank_over == RankOver::All {
            let mut taken = vec![false; self.config.vocab_size];
            rows.iter().for_each(|&r| taken[r as usize] = true);
            order.extend((0..self.config.vocab_size as i64).filter(|&r| !taken[r as usize]));
        }
        Ok((self.with_rows(&order)?, rank_over))
    }

    /// The embedding row of each dataset token, in the dataset's id order.
    fn task_rows(&self, map: &TokenMap, dataset_tokens: &[&str]) -> Result<Vec<i64>> {
        let vocab = self.config.vocab_size as i64;
        let mut seen = BTreeMap::new();
        let mut rows = Vec::with_capacity(dataset_tokens.len());
        for token in dataset_tokens {
            let row = map.row(token).ok_or_else(|| {
                ModelError::Input(format!(
                    "the dataset token `{token}` is not in the checkpoint's vocabulary (its token map, \
                     from added_tokens.json): not the dataset this checkpoint was trained on"
                ))
            })?;
            if !(0..vocab).contains(&row) {
                return Err(ModelError::Input(format!(
                    "the token map puts `{token}` at row {row}, outside the embedding's {vocab} rows"
                )));
            }
            if let Some(other) = seen.insert(row, *token) {
                return Err(ModelError::Input(format!(
                    "the token map puts `{other}` and `{token}` on the same row {row}"
                )));
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// The same model whose embedding (and tied unembedding) row `i` is row `rows[i]` of this one.
    pub fn with_rows(self, rows: &[i64]) -> Result<Checkpoint> {
        let mut config = self.config.clone();
        config.vocab_size = rows.len();
        let index = Tensor::from_slice(rows).to_kind(Kind::Int64);
        let vars = self.vs.variables();
        let shapes = vars
            .iter()
            .map(|(name, t)| {
                let mut size = t.size();
                if name == WTE {
                    size[0] = rows.len() as i64;
                }
                (name.clone(), size)
            })
            .collect();
        let device = self.vs.device();
        let get = |name: &str| -> Result<Tensor> {
            let t = vars[name].detach();
            Ok(if name == WTE {
                t.f_index_select(0, &index.to_device(t.device()))?
            } else {
                t
            })
        };
        let source = Path::new("the re-rowed checkpoint");
        Checkpoint::from_source(config, &shapes, get, source, device, self.metadata.clone())
    }
}

/// The token embedding's parameter name (the unembedding is tied to it).
const WTE: &str = "transformer.wte.weight";
