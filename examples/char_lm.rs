//! A character-level language model (a small GPT-style decoder) on the embedded questions:
//! trained with fused causal attention, validation perplexity per epoch, then text sampled
//! with temperature and top-k.
//!
//!     cargo run --release --example char_lm [-- epochs]
//!
//! Data: the questions of `data/qqp/` (both of each pair, lower-cased, one per line), as one
//! stream of characters cut into windows of T = 64; each window predicts itself shifted by one.
//! The last tenth of the stream is the validation set. Model: Embedding(V, 64) +
//! PositionEmbedding(64) -> 2 x TransformerEncoder(256 wide, 4 heads, causal, pre-norm,
//! dropout 0.1) -> LayerNormalization -> Dense(V) logits; sparse categorical cross-entropy on
//! every position, Adam 1e-3, batch 32. Validation perplexity is e^(validation loss).

use std::collections::BTreeSet;

use kiln::device::Device;
use kiln::graph::layers::{
    DenseConfig, EmbeddingConfig, LayerNormalizationConfig, PositionEmbeddingConfig,
    TransformerEncoderConfig,
};
use kiln::graph::{LossFn, LossKind, Objective, ParamBuilder, SequentialConfig, Tape};
use kiln::train::{Column, Dataset, Fit, Progress, TrainConfig};

const T: usize = 64;

/// The questions, one per line, lower-cased.
fn questions() -> Result<String, Box<dyn std::error::Error>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/qqp/mini_quora_duplicate_questions.tsv");
    let (_, pairs, _) = kiln::data::qqp::load(&path, false)?;
    let mut text = String::new();
    for p in pairs {
        for q in [p.q1, p.q2] {
            text.push_str(&q.to_lowercase());
            text.push('\n');
        }
    }
    Ok(text)
}

/// Windows of T ids and their next-character targets, T apart.
fn windows(ids: &[u32]) -> Dataset {
    let n = (ids.len() - 1) / T;
    let (mut x, mut y) = (Vec::with_capacity(n * T), Vec::with_capacity(n * T));
    for w in 0..n {
        x.extend_from_slice(&ids[w * T..w * T + T]);
        y.extend_from_slice(&ids[w * T + 1..w * T + T + 1]);
    }
    Dataset::single(Column::ids(x, &[T]), Column::ids(y, &[T]))
}

/// A small deterministic generator for sampling (xorshift64*).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// Samples `n` characters after `prompt`: logits / temperature, the `top_k` most likely kept.
fn sample(
    model: &kiln::graph::Sequential,
    params: &kiln::graph::ParamStore,
    d: &Device,
    (alphabet, prompt): (&[char], &str),
    (n, temperature, top_k): (usize, f32, usize),
    rng: &mut Rng,
) -> Result<String, Box<dyn std::error::Error>> {
    let id = |c: char| {
        alphabet
            .iter()
            .position(|&a| a == c)
            .map_or(1, |i| i as u32 + 1)
    };
    let mut ids: Vec<u32> = prompt.chars().map(id).collect();
    let mut out = prompt.to_string();
    for _ in 0..n {
        // The last T characters, left-aligned: causal attention makes the padding after them
        // irrelevant to the position read.
        let ctx = &ids[ids.len().saturating_sub(T)..];
        let mut window = ctx.to_vec();
        window.resize(T, 0);
        let tape = Tape::inference(d);
        let x = tape.constant(d.from_u32(&window, &[1, T])?);
        let logits = d.to_f32(model.forward(&tape, params, &x)?.value())?;
        let v = alphabet.len() + 1;
        let row = &logits[(ctx.len() - 1) * v..ctx.len() * v];
        let mut order: Vec<usize> = (1..v).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        order.truncate(top_k);
        let top = row[order[0]];
        let weights: Vec<f32> = order
            .iter()
            .map(|&i| ((row[i] - top) / temperature).exp())
            .collect();
        let mut pick = rng.uniform() * weights.iter().sum::<f32>();
        let mut chosen = order[order.len() - 1];
        for (&i, &w) in order.iter().zip(&weights) {
            if pick < w {
                chosen = i;
                break;
            }
            pick -= w;
        }
        ids.push(chosen as u32);
        out.push(alphabet[chosen - 1]);
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs: usize = std::env::args().nth(1).map_or(Ok(3), |a| a.parse())?;
    let device = Device::from_env()?;
    let text = questions()?;
    let alphabet: Vec<char> = text.chars().collect::<BTreeSet<_>>().into_iter().collect();
    let ids: Vec<u32> = text
        .chars()
        .map(|c| alphabet.binary_search(&c).expect("in the alphabet") as u32 + 1)
        .collect();
    let cut = ids.len() * 9 / 10;
    let (train, val) = (windows(&ids[..cut]), windows(&ids[cut..]));
    let v = alphabet.len() + 1; // id 0 is unused (padding when sampling)
    println!(
        "{} characters, {} distinct; {} training and {} validation windows of {T}",
        ids.len(),
        alphabet.len(),
        train.len(),
        val.len()
    );
    let block = TransformerEncoderConfig::new(256, 4)
        .causal(true)
        .normalize_first(true)
        .dropout(0.1);
    let config = SequentialConfig::new(&[T])
        .add(EmbeddingConfig::new(v, 64))
        .add(PositionEmbeddingConfig::new(T))
        .add(block.clone())
        .add(block)
        .add(LayerNormalizationConfig::new())
        .add(DenseConfig::new(v));
    let pb = ParamBuilder::new(7);
    let model = config.init(&pb)?;
    let params = pb.build(&device)?;
    let loss = LossFn::new(|tape: &Tape, pred: &kiln::Var, target: &kiln::Var| {
        LossKind::SparseCategoricalCrossentropyFromLogits.loss(tape, pred, target.value())
    });
    let cfg = TrainConfig::default().epochs(epochs).batch(32);
    let trained = Fit::new(cfg).loss(&loss).callback(Progress::lines()).run(
        &model,
        &params,
        &train,
        Some(&val),
    )?;
    let perplexities: Vec<f32> = trained
        .history
        .epochs
        .iter()
        .map(|e| e.val_loss.unwrap_or(f32::NAN).exp())
        .collect();
    for (e, p) in perplexities.iter().enumerate() {
        println!("epoch {}: validation perplexity {p:.3}", e + 1);
    }
    let mut rng = Rng(2026);
    for (temperature, top_k) in [(0.8, 5), (1.0, 20)] {
        let s = sample(
            &model,
            &params,
            &device,
            (&alphabet, "what is the best "),
            (120, temperature, top_k),
            &mut rng,
        )?;
        println!("temperature {temperature}, top-{top_k}: {s:?}");
    }
    if perplexities.windows(2).any(|w| w[1] >= w[0]) {
        return Err("validation perplexity did not fall every epoch".into());
    }
    Ok(())
}
