//! Shards: one study split over machines (a Slurm job array, a Kubernetes Indexed Job), each
//! shard a run of its own over a contiguous range of the study's respondent groups, and
//! [`merge`], which writes the shards' journals back into one output directory, byte for byte
//! what one machine's run of the same study and seed writes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::journal::{Entry, Journal};
use crate::diagnostics::Hinted;
pub use crate::report::Shard;
use crate::report::{write_manifest, Manifest, Report};
use crate::study::Study;
use crate::{Error, Result};

impl Shard {
    /// The shard a job scheduler gives this process: Slurm's job array
    /// (`SLURM_ARRAY_TASK_ID` less `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`), else
    /// a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` of `count` when a count is known.
    pub fn from_scheduler(
        env: impl Fn(&str) -> Option<String>,
        count: Option<usize>,
    ) -> std::result::Result<Option<Shard>, String> {
        let num = |name: &str| -> std::result::Result<Option<usize>, String> {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse()
                        .map_err(|_| format!("{name}=`{v}` is not a whole number"))
                })
                .transpose()
        };
        let shard = if let (Some(id), Some(n)) =
            (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?)
        {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index = id.checked_sub(min).ok_or_else(|| {
                format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}")
            })?;
            Some(Shard {
                index,
                count: count.unwrap_or(n),
            })
        } else {
            match (num("JOB_COMPLETION_INDEX")?, count) {
                (Some(index), Some(count)) => Some(Shard { index, count }),
                _ => None,
            }
        };
        if let Some(s) = shard {
            s.check()?;
        }
        Ok(shard)
    }

    fn check(self) -> std::result::Result<Self, String> {
        if self.count == 0 || self.index >= self.count {
            return Err(format!(
                "shard {}/{}: expected K/N with 0 <= K < N",
                self.index, self.count
            ));
        }
        Ok(self)
    }

    /// The groups (of `groups`) this shard runs: a contiguous range, the ranges of all shards
    /// in order covering every group once.
    pub fn groups(self, groups: usize) -> std::ops::Range<usize> {
        groups * self.index / self.count..groups * (self.index + 1) / self.count
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `K/N` (shard K from 0 of N), or `N` alone: the index from the job scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    Given(Shard),
    Count(usize),
}

impl FromStr for ShardArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let num = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{s}`: expected K/N (shard K from 0 of N) or N"))
        };
        match s.split_once('/') {
            Some((k, n)) => Shard {
                index: num(k)?,
                count: num(n)?,
            }
            .check()
            .map(ShardArg::Given),
            None => match num(s)? {
                0 => Err(format!("`{s}`: at least one shard")),
                n => Ok(ShardArg::Count(n)),
            },
        }
    }
}

/// What [`merge`] wrote.
#[derive(Debug)]
pub struct Merged {
    pub summary: String,
    pub respondents: usize,
    pub failed: usize,
    pub answers: usize,
}

/// Writes the shards' runs in `dirs` (all shards of one study, each complete) into `out` as
/// one run: the CSVs, journal, charts and summary of one machine's run; the manifest adds up
/// the shards' counts and times.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Merged> {
    let manifests: Vec<Manifest> = dirs
        .iter()
        .map(|d| super::page::read_manifest(d, "pass the output directories of the shards"))
        .collect::<Result<_>>()?;
    let first = manifests
        .first()
        .ok_or_else(|| Error::Output("no runs to merge".into()))?;
    let mut seen = vec![None; first.shard.map_or(1, |s| s.count)];
    for (dir, m) in dirs.iter().zip(&manifests) {
        let at = dir.join("manifest.json");
        let field = |name: &str, what: String| {
            let message = format!("{}: {name}: {what}", at.display());
            Error::from(Hinted::new(message, "merge the shards of one run only"))
        };
        let shard = m
            .shard
            .ok_or_else(|| field("shard", "not a shard (run with --shard K/N)".into()))?;
        if shard.count != seen.len() {
            return Err(field(
                "shard",
                format!("{shard}, where the first run has {} shards", seen.len()),
            ));
        }
        let same = m.study.sha256 == first.study.sha256
            && m.seed == first.seed
            && m.mode == first.mode
            && m.samples == first.samples
            && m.model.as_ref().map(|x| (&x.file.sha256, &x.kernels))
                == first.model.as_ref().map(|x| (&x.file.sha256, &x.kernels));
        if !same {
            return Err(field(
                "study",
                "another study, seed, mode, sample count, model or kernel path than the first run's".into(),
            ));
        }
        if m.interrupted || m.counts.skipped > 0 {
            let message = format!(
                "{}: interrupted: shard {shard} is not finished",
                at.display()
            );
            let hint = format!("`personas run --resume {}` completes it", dir.display());
            return Err(Hinted::new(message, hint).into());
        }
        if let Some(other) = seen[shard.index].replace(dir) {
            return Err(field(
                "shard",
                format!("{shard} again (also `{}`)", other.display()),
            ));
        }
    }
    if let Some(missing) = seen.iter().position(Option::is_none) {
        let message = format!("shard {missing}/{} is missing", seen.len());
        return Err(Hinted::new(message, "pass every shard's output directory").into());
    }

    let study: Study = super::page::study_of(&dirs[0], first)?;
    let people = study.population()?;
    let mut entries = std::collections::HashMap::new();
    // Read only: the shards' directories are left as they are.
    for dir in dirs {
        entries.extend(Journal::entries(dir)?);
    }
    let mut report = Report::create(out, &study)?;
    let mut journal = Journal::create(out)?;
    let (mut respondents, mut failed, mut answers) = (0, 0, 0);
    for p in &people {
        let entry = entries.remove(&p.id).ok_or_else(|| {
            let message = format!("respondent {} is in no shard's journal", p.id);
            Hinted::new(message, "complete the shards with `personas run --resume`")
        })?;
        journal.append(&[(p.id, &entry)])?;
        match entry {
            Entry::Done(records, dists) => {
                report.add_respondent(p, &records, &dists)?;
                respondents += 1;
                answers += records.len() + dists.len();
            }
            Entry::Failed(_) => failed += 1,
        }
    }
    let mut manifest = Manifest {
        shard: None,
        resumes: 0,
        ..first.clone()
    };
    manifest.counts.respondents = respondents;
    manifest.counts.failed = failed;
    manifest.counts.answers = answers;
    let t = &mut manifest.timings;
    t.load_seconds = manifests.iter().map(|m| m.timings.load_seconds).sum();
    t.run_seconds = manifests.iter().map(|m| m.timings.run_seconds).sum();
    t.multiply_adds = manifests.iter().map(|m| m.timings.multiply_adds).sum();
    t.total_seconds = t.load_seconds + t.run_seconds;
    t.answers_per_second = if t.run_seconds > 0.0 {
        answers as f64 / t.run_seconds
    } else {
        0.0
    };
    write_manifest(out, &manifest)?;
    // Every shard asked the same share baseline; the first one's stands for all.
    let share = dirs[0].join(crate::report::SHARE_FILE);
    if share.exists() {
        std::fs::copy(&share, out.join(crate::report::SHARE_FILE))
            .map_err(|e| Error::file("copy", &share, e))?;
    }
    let (summary, _) = report.finish()?;
    drop(journal);
    super::page::write_page(
        &[super::page::PageRun {
            dir: out.to_path_buf(),
            manifest,
            study,
        }],
        &out.join(super::page::FILE),
    )?;
    Ok(Merged {
        summary,
        respondents,
        failed,
        answers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_group_once_in_order() {
        for groups in [0, 1, 5, 13, 100] {
            for count in 1..8 {
                let ranges: Vec<_> = (0..count)
                    .map(|index| Shard { index, count }.groups(groups))
                    .collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[count - 1].end, groups);
                assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
            }
        }
    }

    #[test]
    fn shard_arguments_and_schedulers() {
        assert_eq!(
            "2/4".parse(),
            Ok(ShardArg::Given(Shard { index: 2, count: 4 }))
        );
        assert_eq!("4".parse(), Ok(ShardArg::Count(4)));
        for bad in ["4/4", "1/0", "x/2", "0", "-1/3"] {
            assert!(bad.parse::<ShardArg>().is_err(), "{bad}");
        }
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::from_scheduler(slurm, None),
            Ok(Some(Shard { index: 2, count: 4 }))
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert_eq!(Shard::from_scheduler(k8s, None), Ok(None), "no count");
        assert_eq!(
            Shard::from_scheduler(k8s, Some(8)),
            Ok(Some(Shard { index: 3, count: 8 }))
        );
        let wrong = env(&[("JOB_COMPLETION_INDEX", "9")]);
        assert!(Shard::from_scheduler(wrong, Some(8)).is_err());
        assert_eq!(Shard::from_scheduler(env(&[]), None), Ok(None));
    }
}
