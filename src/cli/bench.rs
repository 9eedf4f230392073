//! `personas bench`: prefill and decode speed on a model, in the form the comparison script
//! (`scripts/compare_llamacpp.py`) reads, so personas and llama.cpp are measured in one run.

use std::time::Instant;

use clap::Args;
use serde::Serialize;

use super::{Context, ModelArgs};
use crate::engine::generate::prefill;
use crate::engine::sampling::argmax;
use crate::model::cpu::ceilings::{self, Ceilings};
use crate::model::cpu::Kernels;
use crate::model::LogitsAt;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt tokens to prefill.
    #[arg(long, default_value_t = 256)]
    pub prefill: usize,
    /// Tokens to decode, one at a time, after the prompt.
    #[arg(long, default_value_t = 128)]
    pub decode: usize,
    /// File whose text (read exactly, no trimming) is tokenized with special tokens parsed and
    /// no BOS; its first `--prefill` ids are the prompt. Default: a built-in text, repeated.
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<std::path::PathBuf>,
    /// CPU threads (sets RAYON_NUM_THREADS before the first kernel runs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Sequences decoded together after the prompt (forked from it, as `ask --samples` and
    /// studies do); decode_tok_s then counts the tokens of all of them.
    #[arg(long, default_value_t = 1)]
    pub rows: usize,
    /// Timed repetitions after one untimed warm-up; the best of each figure is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Also measure this CPU's ceilings (multiply-adds per second on every thread, memory read
    /// bandwidth over a 256 MiB buffer; about two seconds, after the timed runs) and give each
    /// figure as a share of the one that bounds it.
    #[arg(long)]
    pub ceilings: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report {
    threads: usize,
    repeats: usize,
    rows: usize,
    prompt_ids: Vec<u32>,
    prefill_tokens: usize,
    decode_tokens: usize,
    prefill_tok_s: f64,
    decode_tok_s: f64,
    /// What ran the projections (`amx`, `avx512`, `avx2`, `portable`, `candle`).
    kernels: String,
    /// MiB of weights held in personas' packed layout.
    packed_mib: f64,
    /// The work behind each figure.
    work: Work,
    /// With `--ceilings`: the machine's, and the figures above against them.
    #[serde(skip_serializing_if = "Option::is_none")]
    ceilings: Option<Ceilings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bounds: Option<Bounds>,
}

/// What a token costs: the projections' multiply-adds (without and with the output head) and
/// the bytes of weights one token reads (`None` where candle runs some projections).
#[derive(Serialize)]
struct Work {
    prefill_token_macs: u64,
    decode_token_macs: u64,
    token_bytes: Option<usize>,
    /// Whether the products are f32 (bf16/f16 weights) rather than bytes.
    f32_products: bool,
}

/// The figures as the work they did per second, each against the ceiling that bounds it: a
/// prefill and many rows' decoding are multiply-adds (byte products for the packed formats,
/// f32 for bf16/f16), one row's decoding is reading every projection's weights once a token.
#[derive(Serialize)]
struct Bounds {
    prefill_macs_per_s: f64,
    prefill_share: Option<f64>,
    /// Rows > 1: multiply-adds per second (with the output head); one row: bytes per second.
    decode_rate: f64,
    decode_unit: &'static str,
    decode_share: Option<f64>,
}

fn bounds(llama: &crate::model::Llama, r: &Report, c: &Ceilings) -> Bounds {
    // The packed formats multiply bytes; bf16/f16 weights are widened to f32.
    let peak = match llama.kernels() {
        Kernels::Candle => None,
        _ if r.work.f32_products => Some(c.f32_fmas_per_s),
        _ => c.int8_macs_per_s,
    };
    let share = |rate: f64, peak: Option<f64>| peak.map(|p| rate / p);
    let prefill_macs_per_s = r.prefill_tok_s * r.work.prefill_token_macs as f64;
    let (decode_rate, decode_unit, decode_share) = if r.rows > 1 {
        let rate = r.decode_tok_s * r.work.decode_token_macs as f64;
        (rate, "multiply-adds/s", share(rate, peak))
    } else {
        match r.work.token_bytes {
            Some(bytes) => {
                let rate = r.decode_tok_s * bytes as f64;
                (rate, "bytes/s", Some(rate / c.read_bytes_per_s))
            }
            None => (0.0, "bytes/s", None),
        }
    };
    Bounds {
        prefill_macs_per_s,
        prefill_share: share(prefill_macs_per_s, peak),
        decode_rate,
        decode_unit,
        decode_share,
    }
}

const DEFAULT_TEXT: &str = "The survey asked farmers, teachers and nurses how they feel about \
prices, schools, hospitals and the weather. Most answered briefly, some at length, and a few \
asked questions of their own before they agreed to take part. ";

pub fn run(ctx: &Context, args: BenchArgs) -> anyhow::Result<()> {
    if let Some(t) = args.threads {
        // candle sizes its CPU pool from this variable the first time a kernel runs.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    let mut model = ctx.load_model(&args.model)?;
    // One sequence, as in chat (see `Llama::set_batch_invariant`); many, as studies run them.
    model.llama.set_batch_invariant(args.rows > 1);
    let prompt = match &args.prompt_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
            let ids = model.tokenizer.encode(&text, false)?;
            if ids.len() < args.prefill {
                anyhow::bail!(
                    "`{}` has {} tokens, fewer than --prefill {}",
                    path.display(),
                    ids.len(),
                    args.prefill
                );
            }
            ids[..args.prefill].to_vec()
        }
        None => {
            let piece = model.tokenizer.encode(DEFAULT_TEXT, false)?;
            piece.iter().copied().cycle().take(args.prefill).collect()
        }
    };
    if prompt.is_empty() {
        anyhow::bail!("--prefill must be at least 1");
    }
    if args.rows == 0 {
        anyhow::bail!("--rows must be at least 1");
    }
    let llama = &model.llama;
    let mut best_prefill = f64::MAX;
    let mut best_decode = f64::MAX;
    for round in 0..=args.repeats.max(1) {
        let mut cache = llama.new_cache(1, prompt.len() + args.decode + 1)?;
        let t0 = Instant::now();
        let mut logits = prefill(llama, &mut cache, &prompt)?;
        let prefill_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        if args.rows == 1 {
            for _ in 0..args.decode {
                let next = argmax(&logits) as u32;
                let out = llama.forward(&[vec![next]], &mut cache, LogitsAt::Last)?;
                logits = out.squeeze(0)?.to_vec1()?;
            }
        } else {
            // Rows start from the same logits; row r takes the r-th most likely token first so
            // the rows differ, then each continues greedily.
            let mut order: Vec<u32> = (0..logits.len() as u32).collect();
            order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
            let mut rows = cache.rows(&vec![0; args.rows])?;
            let mut next: Vec<u32> = order.iter().copied().cycle().take(args.rows).collect();
            for _ in 0..args.decode {
                let feed: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
                let out = llama.forward(&feed, &mut rows, LogitsAt::Last)?;
                next = out
                    .to_vec2::<f32>()?
                    .iter()
                    .map(|l| argmax(l) as u32)
                    .collect();
            }
        }
        let decode_s = t1.elapsed().as_secs_f64();
        if round > 0 {
            best_prefill = best_prefill.min(prefill_s);
            best_decode = best_decode.min(decode_s);
        }
    }
    let mut report = Report {
        threads: candle_core::utils::get_num_threads(),
        repeats: args.repeats,
        rows: args.rows,
        prompt_ids: prompt.clone(),
        prefill_tokens: prompt.len(),
        decode_tokens: args.decode,
        prefill_tok_s: prompt.len() as f64 / best_prefill,
        decode_tok_s: (args.decode * args.rows.max(1)) as f64 / best_decode,
        kernels: llama.kernels().to_string(),
        packed_mib: llama.packed_bytes() as f64 / (1 << 20) as f64,
        work: Work {
            prefill_token_macs: llama.multiply_adds_per_token(false),
            decode_token_macs: llama.multiply_adds_per_token(true),
            token_bytes: llama.projection_bytes(),
            f32_products: llama.packed_half(),
        },
        ceilings: None,
        bounds: None,
    };
    if args.ceilings {
        let c = ceilings::measure();
        report.bounds = Some(bounds(llama, &report, &c));
        report.ceilings = Some(c);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "prefill {} tokens: {:.1} tok/s; decode {} tokens x {} rows: {:.1} tok/s ({} kernels, {:.0} MiB packed)",
            report.prefill_tokens,
            report.prefill_tok_s,
            report.decode_tokens,
            report.rows,
            report.decode_tok_s,
            report.kernels,
            report.packed_mib
        );
        if let (Some(c), Some(b)) = (&report.ceilings, &report.bounds) {
            let g = |v: f64| v / 1e9;
            let pct = |s: Option<f64>| s.map_or("-".into(), |s| format!("{:.0}%", 100.0 * s));
            println!(
                "ceilings on {} threads: {} G byte multiply-adds/s ({}), {:.1} G f32 FMA/s, {:.1} GB/s read",
                c.threads,
                c.int8_macs_per_s.map_or("-".into(), |v| format!("{:.1}", g(v))),
                c.int8_instruction.unwrap_or("none"),
                g(c.f32_fmas_per_s),
                g(c.read_bytes_per_s)
            );
            println!(
                "prefill {:.1} G multiply-adds/s ({} of the peak); decode {:.1} G {} ({} of the ceiling)",
                g(b.prefill_macs_per_s),
                pct(b.prefill_share),
                g(b.decode_rate),
                b.decode_unit,
                pct(b.decode_share)
            );
        }
    }
    Ok(())
}
