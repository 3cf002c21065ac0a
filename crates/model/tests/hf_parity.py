"""HF parity helper for crates/model/tests/integration/hf.rs (run by the Rust tests, not by hand).

check-export MODEL_DIR EXPECTED  loads MODEL_DIR with transformers.GPT2LMHeadModel (offline) and
                                 compares its logits and every hidden state with EXPECTED
                                 (safetensors: tokens, logits, hidden.0 .. hidden.L) within 1e-5.
recurrence MODEL_DIR EXPECTED    writes to EXPECTED (tokens, logits) the logits of MODEL_DIR's GPT-2
                                 with its blocks run twice, computed with explicit tensor code over
                                 transformers' blocks (the paper's `add_recurrence`): embeddings once,
                                 h[0..L-1] then h[0..L-1] again, ln_f once, the tied unembedding.
make-bin MODEL_DIR EXPECTED      writes a random GPT-2 with a 52,464-token vocabulary as
                                 config.json + pytorch_model.bin (torch.save'd state dict with the
                                 tied lm_head and the old attention mask buffers) and its outputs.
"""
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402
from transformers.utils import logging  # noqa: E402

TOLERANCE = 1e-5


def outputs(model, tokens):
    with torch.no_grad():
        out = model(tokens, output_hidden_states=True)
    result = {"tokens": tokens, "logits": out.logits.contiguous()}
    for i, h in enumerate(out.hidden_states):
        result[f"hidden.{i}"] = h.contiguous()
    return result


def check_export(model_dir, expected_path):
    logging.set_verbosity_error()
    model, info = GPT2LMHeadModel.from_pretrained(model_dir, output_loading_info=True)
    model.eval()
    problems = {k: v for k, v in info.items() if v}
    if problems:
        print(f"loading info not clean: {problems}")
        return 1
    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
        print("lm_head is not tied to wte")
        return 1
    expected = load_file(expected_path)
    got = outputs(model, expected["tokens"])
    n_hidden = len([k for k in got if k.startswith("hidden.")])
    worst = 0.0
    for name in ["logits"] + [f"hidden.{i}" for i in range(n_hidden)]:
        if name not in expected:
            print(f"{name} missing from the Rust outputs")
            return 1
        if expected[name].shape != got[name].shape:
            print(f"{name}: shape {tuple(got[name].shape)} (HF) vs {tuple(expected[name].shape)} (grokscope)")
            return 1
        diff = (expected[name] - got[name]).abs().max().item()
        print(f"{name}: max |diff| = {diff:.3e}")
        worst = max(worst, diff)
    if worst > TOLERANCE:
        print(f"FAIL: max difference {worst:.3e} > {TOLERANCE}")
        return 1
    print("OK")
    return 0


def make_bin(model_dir, expected_path):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=52464, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                        bos_token_id=50256, eos_token_id=50256)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    os.makedirs(model_dir, exist_ok=True)
    config.save_pretrained(model_dir)
    state = model.state_dict()
    state["lm_head.weight"] = model.transformer.wte.weight
    state["transformer.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 16, 16, dtype=torch.bool))
    state["transformer.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, os.path.join(model_dir, "pytorch_model.bin"))
    tokens = torch.tensor([[0, 52463, 50256, 51000, 7], [3, 52000, 1, 2, 52463]], dtype=torch.int64)
    save_file(outputs(model, tokens), expected_path)
    return 0


def recurrence(model_dir, expected_path):
    logging.set_verbosity_error()
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    t = model.transformer
    tokens = torch.tensor([[1, 5, 9, 2], [3, 3, 7, 11]], dtype=torch.int64)
    with torch.no_grad():
        x = t.wte(tokens) + t.wpe(torch.arange(tokens.shape[1]))[None]
        for block in list(t.h) + list(t.h):
            x = block(x)
            x = x[0] if isinstance(x, tuple) else x
        logits = t.ln_f(x) @ t.wte.weight.T
    save_file({"tokens": tokens, "logits": logits.contiguous()}, expected_path)
    return 0


def main():
    commands = {"check-export": check_export, "make-bin": make_bin, "recurrence": recurrence}
    if len(sys.argv) != 4 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    command, model_dir, expected = sys.argv[1:]
    return commands[command](model_dir, expected)


if __name__ == "__main__":
    sys.exit(main())
