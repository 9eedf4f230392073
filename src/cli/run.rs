//! `personas run` and `personas population`: the workshop's Demos 2 and 3, and every study after
//! them. The study file is checked completely before any model is loaded.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::{Context, ModelArgs};
use crate::diagnostics::Hinted;
use crate::report::{FileInfo, Manifest, ModelInfo};
use crate::runner::shard::ShardArg;
use crate::runner::{self, RunSettings, Shard};
use crate::study::{self, Mode};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Sample,
    Exact,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The study file (TOML; see docs/study-format.md). With --resume, the run's own study.
    #[arg(required_unless_present = "resume")]
    pub study: Option<PathBuf>,
    /// Output directory. Default: `runs/<study name>`.
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in DIR (killed, stopped or with failures): respondents its journal
    /// holds are kept, the rest computed, with the run's study, model, kernels and settings.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// With --resume: run the respondents that failed again.
    #[arg(long, requires = "resume")]
    pub retry_failed: bool,
    /// Run one shard of the study: K/N is shard K (from 0) of N, a contiguous share of the
    /// respondents; N alone takes K from the job scheduler (Kubernetes' JOB_COMPLETION_INDEX).
    /// In a Slurm job array the shard is taken from SLURM_ARRAY_TASK_ID/_MIN/_COUNT unless
    /// given. `personas merge` joins the shards' directories.
    #[arg(long, value_name = "K/N", env = "PERSONAS_SHARD")]
    pub shard: Option<ShardArg>,
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

pub fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<ExitCode> {
    let earlier = args.resume.as_deref().map(read_manifest).transpose()?;
    let study_path = match (&args.study, &earlier) {
        (Some(p), _) => p.clone(),
        (None, Some(m)) => m.study.path.clone(),
        (None, None) => unreachable!("clap requires the study without --resume"),
    };
    let mut study = study::load(&study_path)?;
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
    let mut model_args = ModelArgs {
        model: args.model.model.clone().or_else(|| study.model.clone()),
        ..args.model.clone()
    };
    if let (Some(dir), Some(m)) = (&args.resume, &earlier) {
        same_run(dir, m, &mut study, &args)?;
        if let Some(info) = &m.model {
            if args.model.model.is_none() {
                model_args.model = Some(match &info.preset {
                    Some(preset) => preset.clone(),
                    None => info.file.path.to_string_lossy().into_owned(),
                });
            }
            // Kernels differ in their last bits: the run goes on with the ones it began with.
            if args.model.kernels.0.is_none() {
                if let Some(k) = &info.kernels {
                    model_args.kernels = k.parse().map_err(|e: String| {
                        anyhow::anyhow!(
                            "{}: model.kernels: {e}",
                            dir.join("manifest.json").display()
                        )
                    })?;
                }
            }
        }
    }
    runner::check(&study)?;
    let scheduler = |count| Shard::from_scheduler(|name| std::env::var(name).ok(), count);
    let shard = match args.shard {
        Some(ShardArg::Given(s)) => Some(s),
        Some(ShardArg::Count(n)) => Some(scheduler(Some(n)).map_err(|e| anyhow::anyhow!("--shard: {e}"))?.ok_or_else(|| {
            Hinted::new(
                format!("--shard {n}: no shard index from a job scheduler (SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)"),
                format!("give it as --shard K/{n}"),
            )
        })?),
        None => scheduler(None).map_err(|e| anyhow::anyhow!("--shard: {e}"))?,
    };
    let shard = match &earlier {
        Some(m) => {
            if args.shard.is_some() && shard != m.shard {
                let at = args.resume.as_deref().unwrap_or(Path::new("."));
                let message = format!(
                    "{}: shard: --shard differs from the run being resumed",
                    at.join("manifest.json").display()
                );
                return Err(Hinted::new(message, "leave it out").into());
            }
            m.shard
        }
        None => shard,
    };
    let out = match &args.resume {
        Some(dir) => dir.clone(),
        None => args.out.clone().unwrap_or_else(|| {
            let dir = default_out(&study_path);
            match shard {
                Some(s) => dir.join(format!("shard-{}-of-{}", s.index, s.count)),
                None => dir,
            }
        }),
    };

    // The files are found (downloaded on first use) and the study checked against the
    // tokenizer before anything is written or any weight is read.
    let t0 = Instant::now();
    let located = crate::source::locate(&ctx.registry, &ctx.hub, model_args.model.as_deref())?;
    runner::check_answers(&study, &crate::model::load_tokenizer(&located.files)?)?;

    if earlier.is_none() {
        // Before the model loads, so that a run killed while loading can be resumed too.
        let manifest = Manifest {
            shard,
            ..Manifest::new(&study)
        };
        crate::report::write_manifest(&out, &manifest).map_err(|e| {
            Hinted::around(
                e,
                "--out must name a directory that can be created and written",
            )
        })?;
    }
    let sha256 = file_sha256(located.files.main_path())?;
    if let Some(info) = earlier.as_ref().and_then(|m| m.model.as_ref()) {
        if !(info.file.sha256.is_empty() || sha256.is_empty() || info.file.sha256 == sha256) {
            let message = format!(
                "{}: the model `{}` is not the file the run began with (sha256 {} then, \
                 {sha256} now)",
                out.join("manifest.json").display(),
                located.files.main_path().display(),
                info.file.sha256
            );
            let hint = "resume with the same model, or start a new run with --out";
            return Err(Hinted::new(message, hint).into());
        }
    }
    let model = ctx.load_model(&model_args)?;
    let load_seconds = t0.elapsed().as_secs_f64();
    let info = ModelInfo {
        preset: located.preset.clone(),
        file: FileInfo {
            path: located.files.main_path().to_path_buf(),
            sha256,
        },
        kernels: Some(model.llama.kernels().to_string()),
        cpu_features: (model.llama.kernels().features().iter())
            .map(|f| f.to_string())
            .collect(),
        blas: crate::model::cpu::blas().map(str::to_owned),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A second Ctrl-C quits at once; the journal holds every group finished by then.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\nstopping after the group of respondents in progress; everything finished is kept (Ctrl-C again to quit now)"
        );
    });
    let settings = RunSettings {
        out_dir: out.clone(),
        batch: args.batch,
        progress: !args.quiet,
        resume: earlier,
        retry_failed: args.retry_failed,
        shard,
    };
    if let Some(s) = shard {
        eprintln!(
            "shard {s}: its share of the respondents, into {}",
            out.display()
        );
    }
    let outcome = runner::run(&study, &model, Some(info), &settings, &stop, load_seconds).map_err(
        |e| match e {
            // The journal holds every finished group: nothing computed is lost.
            crate::Error::Report(_) | crate::Error::File { .. } => {
                let hint = format!(
                    "finished respondents are kept in `{}`; once it can be written (free \
                     space if the disk is full), `personas run --resume {}` continues the run",
                    out.join("journal.jsonl").display(),
                    out.display()
                );
                anyhow::Error::new(Hinted::around(e, hint))
            }
            e => e.into(),
        },
    )?;
    println!("{}", outcome.summary);
    println!(
        "{} respondents, {} answers in {:.1} s ({:.1} answers/s){}{}",
        outcome.respondents,
        outcome.answers,
        outcome.seconds,
        outcome.answers as f64 / outcome.seconds.max(1e-9),
        if outcome.failed.is_empty() {
            String::new()
        } else {
            format!(", {} failed", outcome.failed.len())
        },
        if outcome.interrupted {
            format!(", interrupted with {} not started", outcome.skipped)
        } else {
            String::new()
        }
    );
    println!("results in {}", out.display());
    println!("report: {}", out.join(runner::page::FILE).display());
    if let Some((id, why)) = outcome.failed.first() {
        let message = format!(
            "{} of {} respondents failed (respondent {id}: {why})",
            outcome.failed.len(),
            outcome.failed.len() + outcome.respondents + outcome.skipped,
        );
        let hint = format!(
            "`personas run --resume {} --retry-failed` runs them again",
            out.display()
        );
        return Err(Hinted::new(message, hint).into());
    }
    if outcome.interrupted {
        eprintln!(
            "stopped; `personas run --resume {}` completes the run",
            out.display()
        );
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifest of the run in `dir`.
fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        // A run writes its manifest before the model loads; one stopped sooner left nothing
        // to go on with.
        std::io::ErrorKind::NotFound => Hinted::new(
            format!(
                "cannot resume `{}`: no manifest.json there, so no run began there",
                dir.display()
            ),
            "--resume takes the output directory of a run; a run stopped before it wrote its \
             manifest starts again with --out",
        ),
        _ => Hinted::new(
            format!("cannot resume `{}`", path.display()),
            "--resume takes the output directory of a run",
        )
        .because(e),
    })?;
    serde_json::from_str(&text).map_err(|e| {
        let hint = "--resume takes the output directory of a personas run";
        crate::report::json_error(&path, "personas manifest", &e, hint).into()
    })
}

/// Checks that `study` is the one the run in `dir` began with, and takes that run's seed,
/// mode and samples (options that would change them are refused).
fn same_run(
    dir: &Path,
    m: &Manifest,
    study: &mut study::Study,
    args: &RunArgs,
) -> anyhow::Result<()> {
    let path = dir.join("manifest.json");
    if study.sha256 != m.study.sha256 {
        let message = format!(
            "{}: study.sha256: `{}` has changed since the run began",
            path.display(),
            study.path.display()
        );
        return Err(Hinted::new(message, "a changed study is a new run (--out)").into());
    }
    let clash = |flag: &str, field: &str| {
        let message = format!(
            "{}: {field}: {flag} differs from the run being resumed",
            path.display()
        );
        anyhow::Error::new(Hinted::new(
            message,
            "leave it out, or start a new run with --out",
        ))
    };
    if args.seed.is_some_and(|s| s != m.seed) {
        return Err(clash("--seed", "seed"));
    }
    if args.samples.is_some_and(|n| n != m.samples) {
        return Err(clash("--samples", "samples"));
    }
    let mode = args.mode.map(|a| match a {
        ModeArg::Sample => Mode::Sample,
        ModeArg::Exact => Mode::Exact,
    });
    if mode.is_some_and(|x| x != m.mode) {
        return Err(clash("--mode", "mode"));
    }
    study.seed = m.seed;
    study.sampling.samples = m.samples;
    study.sampling.mode = m.mode;
    Ok(())
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The output directories of every shard of one run.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged run goes. Default: the shards' common parent directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Output directories of runs (`personas run --out`); several runs share one page.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The page to write. Default: report.html in the run's directory (one run only).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `personas report`: the page of finished runs, from their journals, without a model.
pub fn report(args: ReportArgs) -> anyhow::Result<()> {
    let out = match (args.out, args.dirs.as_slice()) {
        (Some(out), _) => out,
        (None, [one]) => one.join(runner::page::FILE),
        (None, dirs) => {
            let message = format!(
                "{} runs share one page, which belongs to none of their directories",
                dirs.len()
            );
            return Err(Hinted::new(message, "name it with --out FILE").into());
        }
    };
    let runs: Vec<runner::page::PageRun> = args
        .dirs
        .iter()
        .map(|d| runner::page::PageRun::open(d))
        .collect::<Result<_, _>>()?;
    runner::page::write_page(&runs, &out)?;
    println!("{}", out.display());
    Ok(())
}

/// `personas merge`: the shards' journals into one run's files, without a model.
pub fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let out = match args.out {
        Some(out) => out,
        None => {
            let parents: Vec<Option<&Path>> = args.dirs.iter().map(|d| d.parent()).collect();
            match parents[0] {
                Some(p) if parents.iter().all(|q| *q == Some(p)) => p.to_path_buf(),
                _ => {
                    let message = "the shards have no common parent directory";
                    return Err(Hinted::new(message, "name one with --out").into());
                }
            }
        }
    };
    let merged = runner::shard::merge(&args.dirs, &out)?;
    println!("{}", merged.summary);
    println!(
        "{} respondents, {} answers from {} shards{}",
        merged.respondents,
        merged.answers,
        args.dirs.len(),
        if merged.failed > 0 {
            format!(", {} failed", merged.failed)
        } else {
            String::new()
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
