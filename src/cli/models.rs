//! `personas models` and `personas download`.

use clap::Args;
use serde::Serialize;

use super::Context;
use crate::source;
use crate::source::locate;

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Preset name or hub reference `owner/repo:file`. Default: the registry's default preset.
    pub model: Option<String>,
}

#[derive(Serialize)]
struct Row {
    name: String,
    format: String,
    size: String,
    cached: bool,
    default: bool,
    repo: String,
    description: String,
}

pub fn list(ctx: &Context, args: ModelsArgs) -> anyhow::Result<()> {
    let rows: Vec<Row> = ctx
        .registry
        .presets
        .iter()
        .map(|(name, spec)| Row {
            name: name.clone(),
            format: format!("{:?}", spec.format).to_lowercase(),
            size: spec
                .size
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into()),
            cached: spec
                .weight_requests()
                .iter()
                .all(|r| source::cached(&ctx.hub, r).is_some()),
            default: *name == ctx.registry.default,
            repo: spec.repo.clone(),
            description: spec.description.clone().unwrap_or_default(),
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<18} {:<12} {:>9}  {:<7} REPO",
        "NAME", "FORMAT", "SIZE", "CACHED"
    );
    for r in rows {
        let name = if r.default {
            format!("{} *", r.name)
        } else {
            r.name
        };
        println!(
            "{:<18} {:<12} {:>9}  {:<7} {}",
            name,
            r.format,
            r.size,
            if r.cached { "yes" } else { "no" },
            r.repo
        );
    }
    println!("(* default; cache: {})", ctx.hub.cache_dir.display());
    Ok(())
}

pub fn download(ctx: &Context, args: DownloadArgs) -> anyhow::Result<()> {
    let located = locate(&ctx.registry, &ctx.hub, args.model.as_deref())?;
    println!("{}", located.files.main_path().display());
    Ok(())
}
