//! The command line: argument types, and the glue each subcommand shares (finding, downloading
//! and loading a model). One file per subcommand.

mod ask;
mod bench;
mod chat;
mod inspect;
mod models;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::engine::SamplingParams;
use crate::model::Model;
use crate::source::HubSettings;
use crate::source::Registry;

/// Simulate people with large language models running locally.
#[derive(Debug, Parser)]
#[command(name = "personas", version, about, max_term_width = 100)]
pub struct Cli {
    /// Extra model presets (TOML, same form as models.toml), on top of the built-in ones and
    /// the per-user file.
    #[arg(long, global = true, value_name = "FILE", env = "PERSONAS_MODELS_FILE")]
    pub models: Option<PathBuf>,
    /// Where to run: cpu, cuda, cuda:N or metal.
    #[arg(long, global = true, default_value = "cpu", env = "PERSONAS_DEVICE")]
    pub device: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List model presets: name, format, size, cached or not.
    Models(models::ModelsArgs),
    /// Download a model into the Hugging Face cache (verified by sha256).
    Download(models::DownloadArgs),
    /// Talk with a persona, interactively (Demo 1).
    Chat(chat::ChatArgs),
    /// Ask one question and print the answer, or N seeded answers; for scripts.
    Ask(ask::AskArgs),
    /// Print the token ids of a text (special tokens parsed).
    Tokenize(inspect::TokenizeArgs),
    /// Print the most likely next tokens after a raw prompt (no chat template).
    NextToken(inspect::NextTokenArgs),
    /// Run a study: population x questions x samples, to CSV, manifest and charts.
    Run(run::RunArgs),
    /// Print a study's people as CSV (no model needed).
    Population(run::PopulationArgs),
    /// Join the output directories of a sharded run (`run --shard K/N`) into one run's files.
    Merge(run::MergeArgs),
    /// Write the HTML report of finished runs (`run` writes its own): answers, breakdowns,
    /// constructs, correlations, free text; one self-contained page.
    Report(run::ReportArgs),
    /// Measure prefill and decode speed (tokens per second).
    Bench(bench::BenchArgs),
}

/// Which model to use.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A preset name (see `personas models`), a .gguf file, a safetensors directory, or a hub
    /// reference `owner/repo:file`. Default: the registry's default preset.
    #[arg(long, short = 'm', env = "PERSONAS_MODEL")]
    pub model: Option<String>,
    /// A Jinja chat template file that replaces the model's own.
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
    /// What runs the projections on the CPU: `auto` (the fastest this CPU has), `amx` (AVX-512
    /// VNNI and AMX tiles for prefill and batches), `avx512` (personas' kernels with AVX-512
    /// VNNI), `avx2` (the portable kernels compiled for AVX2),
    /// `portable` (the same kernels in plain Rust, any CPU, same results, slower) or `candle`
    /// (candle's kernels, as on a GPU). personas' kernels keep weights at their stored width
    /// (GGUF Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K; bf16 and f16 from GGUF or
    /// safetensors); other formats go to candle.
    #[arg(
        long,
        value_name = "KIND",
        default_value = "auto",
        env = "PERSONAS_KERNELS"
    )]
    pub kernels: crate::model::cpu::KernelChoice,
    /// Memory (MiB) personas may spend on dense f32 copies of the weights left to candle
    /// (formats personas' kernels do not read, or `--kernels candle`), which makes batched
    /// prefill and sampling on the CPU many times faster; models whose copies would need more
    /// stay quantized only. 0 turns the copies off.
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 2048,
        env = "PERSONAS_DENSE_MB"
    )]
    pub dense_mb: usize,
}

/// How tokens are drawn.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.8, value_parser = at_least_zero)]
    pub temperature: f32,
    /// 0 disables top-k.
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// 1 disables top-p.
    #[arg(long, default_value_t = 0.95, value_parser = above_zero_at_most_one)]
    pub top_p: f32,
    /// 0 disables min-p.
    #[arg(long, default_value_t = 0.05, value_parser = zero_to_one)]
    pub min_p: f32,
    /// Penalize tokens already generated (off unless given; 1.1 is a common value).
    #[arg(long, value_parser = above_zero)]
    pub repeat_penalty: Option<f32>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
}

/// A finite number within the bounds `ok` checks, described by `range` when it is not.
fn number_in(s: &str, ok: impl Fn(f32) -> bool, range: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && ok(v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is out of range: expected {range}"))
    }
}

fn at_least_zero(s: &str) -> Result<f32, String> {
    number_in(s, |v| v >= 0.0, "0 or more")
}

fn above_zero(s: &str) -> Result<f32, String> {
    number_in(s, |v| v > 0.0, "more than 0")
}

fn zero_to_one(s: &str) -> Result<f32, String> {
    number_in(s, |v| (0.0..=1.0).contains(&v), "0 to 1")
}

fn above_zero_at_most_one(s: &str) -> Result<f32, String> {
    number_in(s, |v| v > 0.0 && v <= 1.0, "more than 0 and at most 1")
}

impl SamplingArgs {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            max_tokens: self.max_tokens,
        }
    }
}

/// Parses the command line. Help and version print as clap prints them; a usage error is one
/// line, `error: ...` with clap's tip (if any) as its hint, and exit status 2.
pub fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    use clap::Parser;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("{}", usage_error(&e.to_string()));
                Err(ExitCode::from(2))
            }
        },
    }
}

/// clap's rendered error (`error: ...`, tips, usage) as every error is printed: the message on
/// one line, then its first tip on a `hint:` line.
fn usage_error(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut line = lines
        .next()
        .unwrap_or("error: bad command line")
        .to_string();
    if !line.starts_with("error:") {
        line = format!("error: {line}");
    }
    // "the following required arguments were not provided:" is followed by their names.
    if line.ends_with(':') {
        let names: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("tip:"))
            .collect();
        line = format!("{line} {}", names.join(", "));
    }
    if let Some(tip) = lines.find_map(|l| l.strip_prefix("tip:")) {
        line.push_str(&format!("\nhint: {}", tip.trim()));
    } else {
        line.push_str("\nhint: see `personas --help`");
    }
    line
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Study files are checked before the registry or any model is touched.
    match cli.command {
        Command::Population(a) => {
            population_only(a)?;
            return Ok(ExitCode::SUCCESS);
        }
        // No registry or model either: the shards' journals hold the answers.
        Command::Merge(a) => {
            run::merge(a)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Report(a) => {
            run::report(a)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let ctx = Context::new(&cli)?;
    match cli.command {
        Command::Run(a) => return run::run(&ctx, a),
        Command::Population(_) | Command::Merge(_) | Command::Report(_) => {
            unreachable!("handled above")
        }
        Command::Models(a) => models::list(&ctx, a),
        Command::Download(a) => models::download(&ctx, a),
        Command::Chat(a) => chat::run(&ctx, a),
        Command::Ask(a) => ask::run(&ctx, a),
        Command::Tokenize(a) => inspect::tokenize(&ctx, a),
        Command::NextToken(a) => inspect::next_token(&ctx, a),
        Command::Bench(a) => bench::run(&ctx, a),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn population_only(args: run::PopulationArgs) -> anyhow::Result<()> {
    run::population(args)
}

/// What every subcommand may need: the registry, hub settings and the device.
pub struct Context {
    pub registry: Registry,
    pub hub: HubSettings,
    pub device: String,
}

impl Context {
    fn new(cli: &Cli) -> anyhow::Result<Self> {
        Ok(Self {
            registry: Registry::load(cli.models.as_deref())?,
            hub: HubSettings::from_env(),
            device: cli.device.clone(),
        })
    }

    /// The model's tokenizer alone, without reading its weights.
    pub fn load_tokenizer(&self, args: &ModelArgs) -> anyhow::Result<crate::tokenizer::Tokenizer> {
        let located = crate::source::locate(&self.registry, &self.hub, args.model.as_deref())?;
        Ok(crate::model::load_tokenizer(&located.files)?)
    }

    /// Finds the model's files (downloading them on first use), then loads it.
    pub fn load_model(&self, args: &ModelArgs) -> anyhow::Result<Model> {
        let device = crate::model::device(&self.device)?;
        let located = crate::source::locate(&self.registry, &self.hub, args.model.as_deref())?;
        let template = match &args.chat_template {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read chat template `{}`", p.display()))?,
            ),
            None => located.chat_template.clone(),
        };
        let options = crate::model::LoadOptions {
            kernels: args
                .kernels
                .resolve()
                .map_err(|e| anyhow::anyhow!("--kernels: {e}"))?,
            dense_max_bytes: args.dense_mb << 20,
        };
        Ok(Model::load(&located.files, &device, template, options)?)
    }
}

/// `TEXT` or `@FILE`: the text itself, or the contents of FILE.
pub fn text_or_file(value: &str) -> anyhow::Result<String> {
    match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| s.trim_end().to_string())
            .with_context(|| format!("cannot read `{path}`")),
        None => Ok(value.to_string()),
    }
}

/// The workshop's system prompt for Demo 1 ("virtual person simulator").
pub const VIRTUAL_PERSON_SIMULATOR: &str = "You are a virtual person simulator that creates individual synthetic personas, one at a time, that I can specify and then ask them any questions I like. Don’t change out of your role unless I ask you to. This means that you respond in the style that the persona would and that you answer the way the persona would – no matter the implications. Be brief. Do not write any additional explanations unless I ask you to.";

/// Runs a generation (`run`, given the callback for its token ids) and prints the text as it
/// streams, then a newline: what `ask` and `chat` show for a reply.
fn print_streamed<T, E>(
    model: &Model,
    run: impl FnOnce(&mut dyn FnMut(u32) -> bool) -> Result<T, E>,
) -> Result<T, E> {
    use std::io::Write;
    let mut stream = model.tokenizer.decode_stream(true);
    let mut out = std::io::stdout();
    let done = run(&mut |id| {
        if let Ok(Some(piece)) = stream.step(&model.tokenizer, id) {
            let _ = write!(out, "{piece}");
            let _ = out.flush();
        }
        true
    })?;
    if let Ok(Some(rest)) = stream.flush(&model.tokenizer) {
        print!("{rest}");
    }
    println!();
    Ok(done)
}
