"""Shared helpers for the PyTorch reference benchmarks: dataset loading in the paper's format."""
import json
import os
import time

import torch


def set_threads(n):
    torch.set_num_threads(n)
    torch.set_num_interop_threads(1)


def load_dataset(data_dir):
    """Returns (vocab list with <pad> at 0, train tokens [N, T] long, loss positions [N, K], targets [N, K])."""
    vocab = ["<pad>"] + json.load(open(os.path.join(data_dir, "vocab.json")))
    index = {t: i for i, t in enumerate(vocab)}
    train = json.load(open(os.path.join(data_dir, "train.json")))
    seqs, prompts = [], []
    for item in train:
        seqs.append([index[t] for t in split_tokens(item["target_text"])])
        prompts.append(len(split_tokens(item["input_text"])))
    width = max(len(s) for s in seqs) - 1
    n_loss = max(len(s) - p for s, p in zip(seqs, prompts))
    tokens = torch.zeros(len(seqs), width, dtype=torch.long)
    pos = torch.zeros(len(seqs), n_loss, dtype=torch.long)
    tgt = torch.zeros(len(seqs), n_loss, dtype=torch.long)
    for i, (s, p) in enumerate(zip(seqs, prompts)):
        tokens[i, : len(s) - 1] = torch.tensor(s[:-1])
        k = len(s) - p
        pos[i, :k] = torch.arange(p - 1, len(s) - 1)
        tgt[i, :k] = torch.tensor(s[p:])
        # Pad unused loss slots by repeating the last real one (same loss weight as grokscope).
        pos[i, k:] = pos[i, k - 1]
        tgt[i, k:] = tgt[i, k - 1]
    return vocab, tokens, pos, tgt


def split_tokens(text):
    """Splits '<e_1><r_2>' into ['<e_1>', '<r_2>']."""
    out, start = [], None
    for i, c in enumerate(text):
        if c == "<":
            start = i
        elif c == ">" and start is not None:
            out.append(text[start : i + 1])
            start = None
    return out


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
