use model::{Gpt, GptConfig};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};
use train::{AdamW, AdamWParams};

#[test]
fn bench() {
    tch::set_num_threads(std::env::var("NT").map(|s| s.parse().unwrap()).unwrap_or(2));
    let cfg = GptConfig { dropout: 0.0, d_mlp: 512, ..GptConfig::new(227, 5, 128, 4, 4) };
    let vs = nn::VarStore::new(Device::Cpu);
    let gpt = Gpt::new(&vs.root(), &cfg).unwrap();
    let mut opt = AdamW::new(vs.variables(), model::is_decayed, AdamWParams::default());
    let tokens = Tensor::randint(227, [512, 4], (Kind::Int64, Device::Cpu));
    let tgt = Tensor::randint(227, [512 * 2], (Kind::Int64, Device::Cpu));
    let pos = Tensor::from_slice(&[2i64, 3]).view([1, 2]).expand([512, 2], false);
    for train in [false, true] {
        let t = Instant::now();
        for _ in 0..10 { let _ = tch::no_grad(|| gpt.hidden_t(&tokens, train)); }
        println!("fwd nograd train={train}: {:.1} ms", t.elapsed().as_secs_f64() * 100.0);
    }
    let (mut f, mut b, mut op) = (0.0, 0.0, 0.0);
    for _ in 0..20 {
        let t = Instant::now();
        let h = gpt.hidden_t(&tokens, true);
        let idx = pos.unsqueeze(-1).expand([-1, -1, 128], false);
        let logits = gpt.unembed(&h.gather(1, &idx, false));
        let loss = logits.view([-1, 227]).cross_entropy_for_logits(&tgt);
        f += t.elapsed().as_secs_f64();
        let t = Instant::now();
        opt.zero_grad();
        loss.backward();
        b += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _n = opt.clip_grad_norm(1.0);
        opt.step(1e-3);
        op += t.elapsed().as_secs_f64();
    }
    println!("fwd {:.1} ms bwd {:.1} ms, opt {:.1} ms", f * 50.0, b * 50.0, op * 50.0);
}
