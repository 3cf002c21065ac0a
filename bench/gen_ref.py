"""Reference data generation: the paper's composition set at full size, written in plain Python/numpy
the way the paper's notebook structures it (dicts of atomic facts, loops over all two-hop queries).
"""
import argparse
import json
import os
import random
import tempfile

import numpy as np

from common import Timer


def generate(n_entity, n_relation, out_degree, phi, ood_ratio, id_test_ratio, seed):
    rng = np.random.default_rng(seed)
    random.seed(seed)
    atomic = {}
    facts = []
    for h in range(n_entity):
        rels = rng.choice(n_relation, out_degree, replace=False)
        tails = rng.integers(0, n_entity, out_degree)
        atomic[h] = {}
        for r, t in zip(rels, tails):
            atomic[h][int(r)] = int(t)
            facts.append((h, int(r), int(t)))
    order = rng.permutation(len(facts))
    n_ood = round(len(facts) * ood_ratio)
    ood = {facts[i][:2] for i in order[:n_ood]}
    train_pool, test_id, test_ood = [], [], []
    for h in range(n_entity):
        for r1, b in atomic[h].items():
            for r2, t in atomic[b].items():
                q = (h, r1, r2, t)
                o1, o2 = (h, r1) in ood, (b, r2) in ood
                if o1 and o2:
                    test_ood.append(q)
                elif not o1 and not o2:
                    (test_id if random.random() < id_test_ratio else train_pool).append(q)
    n_id_atomic = len(facts) - n_ood
    train_inferred = random.sample(train_pool, round(phi * n_id_atomic))
    train = [{"input_text": f"<e_{h}><r_{r}>", "target_text": f"<e_{h}><r_{r}><e_{t}></a>"} for h, r, t in facts]
    train += [
        {"input_text": f"<e_{h}><r_{a}><r_{b}>", "target_text": f"<e_{h}><r_{a}><r_{b}><e_{t}></a>"}
        for h, a, b, t in train_inferred
    ]
    return train, test_id, test_ood


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=2000)
    ap.add_argument("--relations", type=int, default=200)
    ap.add_argument("--out-degree", type=int, default=20)
    ap.add_argument("--phi", type=float, default=18.0)
    ap.add_argument("--threads", type=int, default=1, help="unused: the reference is single-threaded Python")
    args = ap.parse_args()
    with Timer() as t:
        train, test_id, test_ood = generate(args.entities, args.relations, args.out_degree, args.phi, 0.05, 0.005, 0)
        with tempfile.TemporaryDirectory() as d:
            json.dump(train, open(os.path.join(d, "train.json"), "w"))
    print(json.dumps({"case": "data composition full", "seconds": t.seconds, "train": len(train)}))


if __name__ == "__main__":
    main()
