//! `personas tokenize` and `personas next-token`: look inside a model, to check it against other
//! tools (llama.cpp, transformers) on the same text.

use clap::Args;
use serde::Serialize;

use super::{Context, ModelArgs};
use crate::engine::generate::prefill;

#[derive(Debug, Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print JSON (ids and the text of each token).
    #[arg(long)]
    pub json: bool,
    /// Also add BOS where the model's metadata says add_bos.
    #[arg(long)]
    pub add_bos: bool,
    pub text: String,
}

#[derive(Debug, Args)]
pub struct NextTokenArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// How many of the most likely tokens to show.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[arg(long)]
    pub json: bool,
    /// The raw prompt: no chat template; special tokens are parsed; BOS only if the model's
    /// metadata says add_bos.
    pub prompt: String,
}

#[derive(Serialize)]
struct Token {
    id: u32,
    text: String,
}

#[derive(Serialize)]
struct Candidate {
    id: u32,
    text: String,
    logit: f32,
    logprob: f32,
}

pub fn tokenize(ctx: &Context, args: TokenizeArgs) -> anyhow::Result<()> {
    let model = ctx.load_tokenizer(&args.model)?;
    let ids = model.encode(&args.text, args.add_bos)?;
    if args.json {
        let tokens: Vec<Token> = ids
            .iter()
            .map(|&id| Token {
                id,
                text: model.token_text(id),
            })
            .collect();
        println!("{}", serde_json::to_string(&tokens)?);
    } else {
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        println!("{}", ids.join(" "));
    }
    Ok(())
}

pub fn next_token(ctx: &Context, args: NextTokenArgs) -> anyhow::Result<()> {
    let model = ctx.load_model(&args.model)?;
    let ids = model.tokenizer.encode(&args.prompt, true)?;
    let mut cache = model.llama.new_cache(1, ids.len())?;
    let logits = prefill(&model.llama, &mut cache, &ids)?;
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b)));
    let top: Vec<Candidate> = order
        .iter()
        .take(args.top)
        .map(|&i| Candidate {
            id: i as u32,
            text: model.tokenizer.token_text(i as u32),
            logit: logits[i],
            logprob: logits[i] - lse,
        })
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "prompt_ids": ids, "top": top }))?
        );
    } else {
        for c in top {
            println!(
                "{:>7} {:>10.4} {:>9.4}  {:?}",
                c.id, c.logit, c.logprob, c.text
            );
        }
    }
    Ok(())
}
