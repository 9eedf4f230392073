//! The report page of finished runs (`report.html`), drawn from their journals: `personas run`
//! and `personas merge` write it for their own run, `personas report` for any runs.

use std::path::{Path, PathBuf};

use crate::diagnostics::Hinted;
use crate::report::page::{self, Respondent, RunInput};
use crate::report::{Manifest, ShareBaseline, SHARE_FILE};
use crate::study::{self, Study};
use crate::{Error, Result};

use super::journal::{Entry, Journal};

/// The page's file name in a run's output directory.
pub const FILE: &str = "report.html";

/// One run on the page: its directory, its manifest and the study it ran.
pub struct PageRun {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub study: Study,
}

impl PageRun {
    /// The run in `dir`: its manifest and its study, as it ran (seed, mode and samples from the
    /// manifest). The study must be unchanged since: the page explains its answers with it.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = read_manifest(
            dir,
            "`personas report` takes the output directories of runs",
        )?;
        let study = study_of(dir, &manifest)?;
        Ok(PageRun {
            dir: dir.to_path_buf(),
            manifest,
            study,
        })
    }
}

/// The manifest of the run in `dir`; an error with `hint` as its hint when there is none.
pub(super) fn read_manifest(dir: &Path, hint: &str) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Hinted::around(Error::file("read", &path, e), hint))?;
    serde_json::from_str(&text)
        .map_err(|e| crate::report::json_error(&path, "personas manifest", &e, hint).into())
}

/// The study that the run in `dir` (with `manifest`) ran, with its seed, mode and sample
/// count; an error if the file changed since.
pub fn study_of(dir: &Path, manifest: &Manifest) -> Result<Study> {
    let mut study = study::load(&manifest.study.path)?;
    if study.sha256 != manifest.study.sha256 {
        let message = format!(
            "{}: study.sha256: `{}` has changed since the run",
            dir.join("manifest.json").display(),
            study.path.display()
        );
        let hint = "the run's answers belong to the study it ran: restore that file";
        return Err(Hinted::new(message, hint).into());
    }
    study.seed = manifest.seed;
    study.sampling.mode = manifest.mode;
    study.sampling.samples = manifest.samples;
    Ok(study)
}

/// Writes the share baseline into the run directory `dir`.
pub fn write_share(dir: &Path, share: &[ShareBaseline]) -> Result<()> {
    let json = serde_json::to_string_pretty(share).expect("the baseline serializes");
    Ok(crate::report::write_whole(
        &dir.join(SHARE_FILE),
        &(json + "\n"),
    )?)
}

/// The share baseline a run in `dir` wrote, if any.
fn read_share(dir: &Path) -> Result<Vec<ShareBaseline>> {
    let path = dir.join(SHARE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            let hint = "run the study again to write it";
            crate::report::json_error(&path, "share baseline", &e, hint).into()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::file("read", &path, e)),
    }
}

/// Writes the page of `runs` to `out`.
pub fn write_page(runs: &[PageRun], out: &Path) -> Result<()> {
    let mut people = Vec::with_capacity(runs.len());
    let mut entries = Vec::with_capacity(runs.len());
    let mut shares = Vec::with_capacity(runs.len());
    for run in runs {
        people.push(run.study.population()?);
        entries.push(Journal::entries(&run.dir)?);
        shares.push(read_share(&run.dir)?);
    }
    let inputs: Vec<RunInput> = runs
        .iter()
        .zip(&people)
        .zip(&entries)
        .zip(&shares)
        .map(|(((run, people), entries), share)| {
            let mut respondents = Vec::new();
            let mut failed = Vec::new();
            for person in people {
                match entries.get(&person.id) {
                    Some(Entry::Done(records, distributions)) => respondents.push(Respondent {
                        person,
                        records,
                        distributions,
                    }),
                    Some(Entry::Failed(why)) => failed.push((person.id, why.clone())),
                    None => {}
                }
            }
            RunInput {
                name: run.dir.display().to_string(),
                manifest: &run.manifest,
                study: &run.study,
                respondents,
                failed,
                share,
            }
        })
        .collect();
    Ok(page::write(out, &inputs)?)
}
