//! `personas run` and `personas population`: the workshop's Demos 2 and 3, and every study after
//! them. The study file is checked completely before any model is loaded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::{Context, ModelArgs};
use crate::report::{FileInfo, ModelInfo};
use crate::runner::{self, RunSettings};
use crate::study::{self, Mode};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Sample,
    Exact,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The study file (TOML; see docs/study-format.md).
    pub study: PathBuf,
    /// Output directory. Default: `runs/<study name>`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// sample: constrained sampled answers; exact: every option's probability.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Samples per respondent (overrides the study).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Seed (overrides the study).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Rows decoded together at most; changes speed, never results.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
pub struct PopulationArgs {
    /// The study file.
    pub study: PathBuf,
}

pub fn population(args: PopulationArgs) -> anyhow::Result<()> {
    let study = study::load(&args.study)?;
    let people = study.population()?;
    study::write_population_csv(&people, std::io::stdout())?;
    Ok(())
}

pub fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<()> {
    let mut study = study::load(&args.study)?;
    if let Some(m) = args.mode {
        study.sampling.mode = match m {
            ModeArg::Sample => Mode::Sample,
            ModeArg::Exact => Mode::Exact,
        };
    }
    if let Some(n) = args.samples {
        anyhow::ensure!(n > 0, "--samples must be at least 1");
        study.sampling.samples = n;
    }
    if let Some(s) = args.seed {
        study.seed = s;
    }
    runner::check(&study)?;
    let out = args.out.clone().unwrap_or_else(|| default_out(&args.study));

    let model_args = ModelArgs {
        model: args.model.model.clone().or_else(|| study.model.clone()),
        ..args.model.clone()
    };
    let t0 = Instant::now();
    let located = crate::locate::locate(&ctx.registry, &ctx.hub, model_args.model.as_deref())?;
    let model = ctx.load_model(&model_args)?;
    let load_seconds = t0.elapsed().as_secs_f64();
    let info = ModelInfo {
        preset: located.preset.clone(),
        file: FileInfo {
            path: located.files.main_path().to_path_buf(),
            sha256: file_sha256(located.files.main_path())?,
        },
        kernels: Some(model.llama.kernels().to_string()),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A second Ctrl-C while the current respondent finishes falls through to the default.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current respondent; everything finished is kept");
    });
    let settings = RunSettings {
        out_dir: out.clone(),
        batch: args.batch,
        progress: !args.quiet,
    };
    let outcome = runner::run(&study, &model, Some(info), &settings, &stop, load_seconds)?;
    println!("{}", outcome.summary);
    println!(
        "{} respondents, {} answers in {:.1} s ({:.1} answers/s){}",
        outcome.respondents,
        outcome.answers,
        outcome.seconds,
        outcome.answers as f64 / outcome.seconds.max(1e-9),
        if outcome.interrupted {
            ", interrupted"
        } else {
            ""
        }
    );
    println!("results in {}", out.display());
    Ok(())
}

fn default_out(study: &Path) -> PathBuf {
    let stem = study
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "study".into());
    PathBuf::from("runs").join(stem)
}

/// The weights' sha256: the Hugging Face cache names large blobs by it, so it is read from the
/// blob's name where possible rather than hashing gigabytes on every run.
fn file_sha256(path: &Path) -> anyhow::Result<String> {
    if path.is_dir() {
        return Ok(String::new());
    }
    let real = std::fs::canonicalize(path)?;
    if let Some(name) = real.file_name().and_then(|n| n.to_str()) {
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(name.to_string());
        }
    }
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(&real)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}
