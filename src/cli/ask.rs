//! `personas ask`: one question, one answer or N seeded answers, for scripts.
//!
//! With `--persona`, the conversation is the workshop's: system prompt, the persona as the first
//! user turn, the model's reply to it, then the question. The persona reply is generated once,
//! greedily, and shared by every sample, so samples differ only in how the question is answered.

use clap::Args;
use serde::Serialize;

use super::{
    print_streamed, text_or_file, Context, ModelArgs, SamplingArgs, VIRTUAL_PERSON_SIMULATOR,
};
use crate::chat::Message;
use crate::engine::generate::{generate, sample_many};
use crate::engine::session::{model_template, render_ids};
use crate::engine::{Generation, SamplingParams};
use crate::model::Model;

#[derive(Debug, Args)]
pub struct AskArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// System prompt, as text or @FILE. Default: the workshop's virtual person simulator.
    #[arg(long, value_name = "TEXT|@FILE")]
    pub system: Option<String>,
    /// Persona description, as text or @FILE, sent as the first user turn.
    #[arg(long, value_name = "TEXT|@FILE")]
    pub persona: Option<String>,
    /// Number of answers; answer i is drawn with seed `--seed` + i.
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Rows decoded together when sampling many answers.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Print JSON: each answer with its seed and number of generated tokens.
    #[arg(long)]
    pub json: bool,
    /// Allowed answers, comma-separated (e.g. "Democrat,Republican" or "1,2,3,4,5"): sampled
    /// answers are constrained to them, so none is invalid.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub options: Vec<String>,
    /// Print the exact probability of each of `--options` instead of sampling: read from the
    /// model's token probabilities, renormalized over the options, with the mass outside them.
    #[arg(long, requires = "options")]
    pub distribution: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The question.
    pub question: String,
}

#[derive(Serialize)]
struct Answer {
    sample: usize,
    seed: u64,
    text: String,
    generated_tokens: usize,
    stop: crate::engine::StopReason,
}

#[derive(Serialize)]
struct Output<'a> {
    model: String,
    question: &'a str,
    persona_reply: Option<String>,
    answers: Vec<Answer>,
}

pub fn run(ctx: &Context, args: AskArgs) -> anyhow::Result<()> {
    if args.samples == 0 {
        anyhow::bail!("--samples must be at least 1");
    }
    let system = match &args.system {
        Some(s) => text_or_file(s)?,
        None => VIRTUAL_PERSON_SIMULATOR.to_string(),
    };
    let persona = args.persona.as_deref().map(text_or_file).transpose()?;
    let question = text_or_file(&args.question)?;
    let model = ctx.load_model(&args.model)?;
    let params = args.sampling.params();

    let (messages, persona_reply) = conversation(&model, &system, persona.as_deref(), &question)?;
    let template = model_template(&model)?;
    let prompt = render_ids(&model, &template, &messages, true)?;
    let stop = model.tokenizer.stop_ids();

    if !args.options.is_empty() {
        return closed(&model, &args, &params, &prompt, &question, persona_reply);
    }
    if args.samples == 1 && !args.json {
        print_streamed(&model, |on_token| {
            generate(&model.llama, &prompt, &params, &stop, 0, on_token)
        })?;
        return Ok(());
    }

    let generations = sample_many(
        &model.llama,
        &prompt,
        &params,
        &stop,
        args.samples,
        args.batch,
    )?;
    let answers = answers(&model, &params, generations)?;
    if args.json {
        let out = Output {
            model: model.files.main_path().display().to_string(),
            question: &question,
            persona_reply,
            answers,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for a in answers {
            println!("[{} seed {}] {}", a.sample, a.seed, a.text.trim());
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct DistributionOutput<'a> {
    model: String,
    question: &'a str,
    persona_reply: Option<String>,
    options: Vec<crate::engine::score::OptionScore>,
    /// Probability the model put on replies that are none of the options.
    outside: f64,
}

/// `--options`: the exact distribution over them, or samples constrained to them.
fn closed(
    model: &Model,
    args: &AskArgs,
    params: &SamplingParams,
    prompt: &[u32],
    question: &str,
    persona_reply: Option<String>,
) -> anyhow::Result<()> {
    use crate::engine::generate::{prefill, sample_rng};
    use crate::engine::score::{draw_option, reply_options, score_after};

    let options: Vec<String> = args.options.iter().map(|o| o.trim().to_string()).collect();
    if options.len() < 2 || options.iter().any(|o| o.is_empty()) {
        anyhow::bail!("--options needs at least two non-empty answers, e.g. --options \"Yes,No\"");
    }
    let llama = &model.llama;
    let mut base = llama.new_cache(1, prompt.len() + 16)?;
    let first = prefill(llama, &mut base, prompt)?;
    let toks = reply_options(&model.tokenizer, &options)?;
    if args.distribution {
        let d = score_after(llama, &base, &first, &toks)?;
        if args.json {
            let out = DistributionOutput {
                model: model.files.main_path().display().to_string(),
                question,
                persona_reply,
                options: d.options,
                outside: d.outside,
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            let width = options.iter().map(|o| o.chars().count()).max().unwrap_or(0);
            for o in &d.options {
                println!(
                    "{:width$}  {:.4}  (log p {:.3})",
                    o.option, o.probability, o.logprob
                );
            }
            println!("outside the options: {:.4}", d.outside);
        }
        return Ok(());
    }
    // Every sample is a draw from the scored options (see `draw_option`): the model's
    // whole-answer probabilities, tempered and truncated as a token draw would be.
    let d = score_after(llama, &base, &first, &toks)?;
    let answers: Vec<Answer> = (0..args.samples)
        .map(|i| {
            let pick = draw_option(&d, params, &mut sample_rng(params.seed, i));
            Answer {
                sample: i,
                seed: params.seed.wrapping_add(i as u64),
                text: options[pick].clone(),
                generated_tokens: toks[pick].ids.len(),
                stop: crate::engine::StopReason::EndToken,
            }
        })
        .collect();
    if args.json {
        let out = Output {
            model: model.files.main_path().display().to_string(),
            question,
            persona_reply,
            answers,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for a in answers {
            println!("[{} seed {}] {}", a.sample, a.seed, a.text);
        }
    }
    Ok(())
}

/// System prompt, persona turn and the model's greedy reply to it, then the question.
fn conversation(
    model: &Model,
    system: &str,
    persona: Option<&str>,
    question: &str,
) -> anyhow::Result<(Vec<Message>, Option<String>)> {
    let mut messages = vec![Message::new("system", system)];
    let mut reply = None;
    if let Some(p) = persona {
        messages.push(Message::new("user", p));
        let template = model_template(model)?;
        let ids = render_ids(model, &template, &messages, true)?;
        let g = generate(
            &model.llama,
            &ids,
            &SamplingParams::greedy(128),
            &model.tokenizer.stop_ids(),
            0,
            &mut |_| true,
        )?;
        let text = model.tokenizer.decode(&g.tokens, true)?;
        messages.push(Message::new("assistant", text.trim()));
        reply = Some(text.trim().to_string());
    }
    messages.push(Message::new("user", question));
    Ok((messages, reply))
}

fn answers(
    model: &Model,
    params: &SamplingParams,
    generations: Vec<Generation>,
) -> anyhow::Result<Vec<Answer>> {
    generations
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let text = model.tokenizer.decode(&g.tokens, true)?;
            Ok(Answer {
                sample: i,
                seed: params.seed.wrapping_add(i as u64),
                text,
                generated_tokens: g.tokens.len(),
                stop: g.stop,
            })
        })
        .collect()
}
