"""PyTorch eager reference for a training step: a plain GPT-2 nn.Module, AdamW, answer-only loss.

Written the way a researcher would in eager PyTorch: full logits at every position, then
cross-entropy with the non-answer positions ignored. Reports steps per second.
"""
import argparse
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import Timer, load_dataset, set_threads


class Block(nn.Module):
    def __init__(self, d, n_head, d_mlp, dropout):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, d_mlp)
        self.mlp_proj = nn.Linear(d_mlp, d)
        self.n_head, self.dropout = n_head, nn.Dropout(dropout)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.n_head)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = self.dropout(att.masked_fill(~mask, float("-inf")).softmax(-1))
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.dropout(self.c_proj(y))
        h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.dropout(self.mlp_proj(h))


class GPT(nn.Module):
    def __init__(self, vocab, n_ctx, d, n_head, d_mlp, schedule, dropout):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(n_ctx, d)
        self.h = nn.ModuleList(Block(d, n_head, d_mlp, dropout) for _ in range(max(schedule) + 1))
        self.schedule, self.ln_f, self.drop = schedule, nn.LayerNorm(d), nn.Dropout(dropout)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * len(self.h)) if "proj" in name else 0.02
                nn.init.normal_(p, std=std)
            elif "bias" in name:
                nn.init.zeros_(p)

    def forward(self, tokens):
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.drop(self.wte(tokens) + self.wpe(pos))
        for i in self.schedule:
            x = self.h[i](x)
        return self.ln_f(x) @ self.wte.weight.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--d-mlp", type=int, default=512)
    ap.add_argument("--schedule", default="")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's op table of the timed steps")
    args = ap.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    vocab, tokens, pos, tgt = load_dataset(args.data)
    schedule = [int(s) for s in args.schedule.split(",")] if args.schedule else list(range(args.n_layer))
    dev = torch.device(args.device)
    model = GPT(len(vocab), 16, args.d_model, args.n_head, args.d_mlp, schedule, args.dropout).to(dev)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    tokens, pos, tgt = tokens.to(dev), pos.to(dev), tgt.to(dev)
    labels = torch.full_like(tokens, -100)
    labels.scatter_(1, pos, tgt)
    n = tokens.shape[0]

    def step(i):
        idx = torch.randint(0, n, (args.batch,), device=dev)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(tokens[idx])
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels[idx].view(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for i in range(args.warmup):
        step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for i in range(args.steps):
                step(i)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    with Timer() as t:
        for i in range(args.steps):
            loss = step(i)
        loss.item()
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"steps_per_s": args.steps / t.seconds, "params": params, "seq_len": tokens.shape[1]}))


if __name__ == "__main__":
    main()
