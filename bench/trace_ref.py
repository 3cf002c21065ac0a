"""Reference causal tracing and logit lens on an HF-exported grokscope checkpoint.

Three references, on the same prompt sample (grokscope's examples.jsonl) and the same checkpoint:
  paper  - the paper's script structure: per example, per layer, per patched role, an HF
           GPT2LMHeadModel forward for the clean and corrupted runs, then the upper blocks re-run by hand.
  tl     - TransformerLens 4 (TransformerBridge) get_act_patch_resid_pre: one batched forward per
           (layer, position) cell, denoising, per corruption role.
  lens   - the logit lens over the prompt sample (ln_f(hidden_states[l]) @ wte.T, ranks), HF.
Prints one JSON line per reference with the seconds of its loop (model loading excluded).
"""
import argparse
import json
import os

import torch

from common import Timer, set_threads


def load_examples(path):
    """Returns a list of dicts: clean (ids), gold (id), corruptions {role: (ids, positions)}."""
    out = []
    for line in open(path):
        ex = json.loads(line)
        corr = {role: (c["tokens"], c["positions"]) for role, c in ex["corruptions"].items()}
        out.append({"clean": ex["tokens"], "gold": ex["gold"], "corruptions": corr})
    return out


def paper_loop(model, examples):
    """Per example, per layer 1..L-1, per role: patch the corrupted state and re-run the upper blocks."""
    tr = model.transformer
    n_layer = len(tr.h)
    strengths = {}
    with torch.no_grad():
        for ex in examples:
            clean = torch.tensor([ex["clean"]])
            hs = model(clean, output_hidden_states=True).hidden_states
            for role, (ids, positions) in ex["corruptions"].items():
                hc = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
                for layer in range(1, n_layer):
                    x = hs[layer].clone()
                    x[0, positions] = hc[layer][0, positions]
                    for block in tr.h[layer:]:
                        out = block(x)
                        x = out[0] if isinstance(out, tuple) else out
                    logits = tr.ln_f(x)[0, -1] @ tr.wte.weight.T
                    changed = float(logits.argmax().item() != ex["gold"])
                    key = (role, layer)
                    strengths[key] = strengths.get(key, 0.0) + changed / len(examples)
    return strengths


def logit_lens(model, examples):
    tr = model.transformer
    ranks = []
    with torch.no_grad():
        batch = torch.tensor([ex["clean"] for ex in examples])
        hs = model(batch, output_hidden_states=True).hidden_states
        for layer in range(len(hs) - 1):
            logits = tr.ln_f(hs[layer]) @ tr.wte.weight.T
            gold = torch.tensor([ex["gold"] for ex in examples])
            g = logits[:, -1].gather(1, gold[:, None])
            ranks.append((logits[:, -1] > g).sum(1).float().mean().item())
    return ranks


def tl_bridge(model_dir):
    """The checkpoint as a TransformerLens 4 TransformerBridge (loading is not timed)."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(model_dir, device="cpu")
    bridge.enable_compatibility_mode()
    return bridge


def tl_sweep(bridge, examples):
    from transformer_lens.patching import get_act_patch_resid_pre

    clean = torch.tensor([ex["clean"] for ex in examples])
    gold = torch.tensor([ex["gold"] for ex in examples])
    _, clean_cache = bridge.run_with_cache(clean)
    roles = sorted(examples[0]["corruptions"])
    for role in roles:
        corrupted = torch.tensor([ex["corruptions"].get(role, (ex["clean"], []))[0] for ex in examples])

        def metric(logits):
            return logits[:, -1].gather(1, gold[:, None]).mean()

        get_act_patch_resid_pre(bridge, corrupted, clean_cache, metric)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf-dir", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--which", default="paper,tl,lens")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    set_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(args.hf_dir).eval()
    examples = load_examples(args.examples)
    if args.limit:
        examples = examples[: args.limit]
    for which in args.which.split(","):
        bridge = tl_bridge(args.hf_dir) if which == "tl" else None
        with Timer() as t:
            if which == "paper":
                paper_loop(model, examples)
            elif which == "tl":
                tl_sweep(bridge, examples)
            elif which == "lens":
                logit_lens(model, examples)
        print(json.dumps({"case": which, "seconds": t.seconds, "examples": len(examples)}))


if __name__ == "__main__":
    main()
