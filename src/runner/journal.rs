//! The run's journal, `journal.jsonl` in the output directory: one JSON line per respondent as
//! it finishes (its answers and distributions, or why it failed), synced to disk after every
//! group of respondents. The CSV files are written from the same data, so a killed run is
//! resumed by replaying the journal into fresh CSV files and computing only what it lacks:
//! the files then end byte for byte as an uninterrupted run's.
//!
//! A line cut short by a kill is dropped when the journal is read back, and so is every later
//! line; a later entry for the same respondent (a retried failure) replaces the earlier one.
//! Resuming holds the journal's entries in memory until they are replayed.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::report::{Distribution, Record};
use crate::{Error, Result};

/// The journal's file name in a run's output directory.
pub const FILE: &str = "journal.jsonl";

/// What happened to one respondent.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Done(Vec<Record>, Vec<Distribution>),
    /// The error, on one line.
    Failed(String),
}

/// One line of the journal.
#[derive(Serialize, Deserialize)]
struct Line {
    respondent: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    records: Vec<Record>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    distributions: Vec<Distribution>,
}

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Entries read back on resume, by respondent id, until taken.
    entries: HashMap<usize, Entry>,
}

impl Journal {
    /// A new, empty journal in `dir` (replacing any earlier one).
    pub fn create(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        let file = File::create(&path).map_err(|e| io(&path, e))?;
        Ok(Journal {
            path,
            file,
            entries: HashMap::new(),
        })
    }

    /// The journal of an earlier run in `dir`, keeping only the `groups` (respondent ids) it
    /// holds whole, so that resumed groups are the groups of the first run: a group cut short
    /// is computed again with all its members. The file is rewritten with the kept entries
    /// alone before anything is appended.
    pub fn resume(dir: &Path, groups: &[Vec<usize>]) -> Result<Self> {
        let path = dir.join(FILE);
        let (mut order, mut entries) = read(&path)?;
        for group in groups {
            if !group.iter().all(|id| entries.contains_key(id)) {
                for id in group {
                    entries.remove(id);
                }
            }
        }
        order.retain(|id| entries.contains_key(id));
        let tmp = dir.join(format!("{FILE}.tmp"));
        let mut out = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        for id in &order {
            out.write_all(&encode(*id, &entries[id]))
                .map_err(|e| io(&tmp, e))?;
        }
        out.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        Ok(Journal {
            path,
            file,
            entries,
        })
    }

    /// The entries of the journal in `dir`, by respondent, without changing the file (what
    /// `personas merge` reads from each shard).
    pub fn entries(dir: &Path) -> Result<HashMap<usize, Entry>> {
        Ok(read(&dir.join(FILE))?.1)
    }

    /// Whether the journal read back has an entry for respondent `id`.
    pub fn has(&self, id: usize) -> bool {
        self.entries.contains_key(&id)
    }

    /// Whether that entry is a failure.
    pub fn failed(&self, id: usize) -> bool {
        matches!(self.entries.get(&id), Some(Entry::Failed(_)))
    }

    /// Respondent `id`'s entry read back, taken out of memory.
    pub fn take(&mut self, id: usize) -> Option<Entry> {
        self.entries.remove(&id)
    }

    /// Appends a group's entries and syncs them to disk.
    pub fn append(&mut self, group: &[(usize, &Entry)]) -> Result<()> {
        let mut bytes = Vec::new();
        for (id, entry) in group {
            bytes.extend(encode(*id, entry));
        }
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io(&self.path, e))
    }
}

/// The journal at `path`: the respondents in the order of their first line, and each one's
/// last entry.
fn read(path: &Path) -> Result<(Vec<usize>, HashMap<usize, Entry>)> {
    let file = File::open(path).map_err(|e| Error::file("read", path, e))?;
    let mut order = Vec::new();
    let mut entries = HashMap::new();
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| Error::file("read", path, e))?;
        // A kill can cut the last line; it, and anything after it, is not trusted.
        let Ok(line) = serde_json::from_slice::<Line>(&line) else {
            break;
        };
        let entry = match line.failed {
            Some(why) => Entry::Failed(why),
            None => Entry::Done(line.records, line.distributions),
        };
        if entries.insert(line.respondent, entry).is_none() {
            order.push(line.respondent);
        }
    }
    Ok((order, entries))
}

/// One journal line, newline included.
fn encode(id: usize, entry: &Entry) -> Vec<u8> {
    let line = match entry {
        Entry::Done(records, distributions) => Line {
            respondent: id,
            failed: None,
            records: records.clone(),
            distributions: distributions.clone(),
        },
        Entry::Failed(why) => Line {
            respondent: id,
            failed: Some(why.clone()),
            records: Vec::new(),
            distributions: Vec::new(),
        },
    };
    let mut bytes = serde_json::to_vec(&line).expect("journal lines serialize");
    bytes.push(b'\n');
    bytes
}

/// A journal that cannot be written.
fn io(path: &Path, e: std::io::Error) -> Error {
    Error::file("write", path, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(id: usize, p: f64) -> Entry {
        Entry::Done(
            vec![Record {
                respondent: id,
                sample: 1,
                question_id: "q".into(),
                answer: "a, \"b\"\n".into(),
                probability: Some(p),
            }],
            vec![Distribution {
                respondent: id,
                question_id: "q".into(),
                options: vec![("1".into(), p), ("2".into(), 1.0 - p)],
                outside: Some(0.25),
            }],
        )
    }

    #[test]
    fn entries_come_back_exactly_and_a_cut_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path()).unwrap();
        let (a, b) = (done(1, 0.1 + 0.2), Entry::Failed("out of memory".into()));
        j.append(&[(1, &a), (2, &b)]).unwrap();
        let c = done(3, std::f64::consts::PI / 7.0);
        j.append(&[(3, &c)]).unwrap();
        drop(j);
        // A kill in the middle of a later line.
        let path = dir.path().join(FILE);
        let mut text = std::fs::read(&path).unwrap();
        let full = text.len();
        text.extend_from_slice(b"{\"respondent\":4,\"recor");
        std::fs::write(&path, &text).unwrap();

        // Respondent 3's group lost 4 to the cut: both are computed again.
        let mut j = Journal::resume(dir.path(), &[vec![1], vec![2], vec![3, 4]]).unwrap();
        assert!(j.has(1) && j.has(2) && !j.has(3) && !j.has(4));
        assert!(j.failed(2) && !j.failed(1));
        assert_eq!(j.take(1), Some(a), "floats and strings round-trip exactly");
        assert_eq!(j.take(2), Some(b));
        // Rewritten with the kept entries only; the cut line is gone.
        let kept = std::fs::read(&path).unwrap();
        assert!(kept.len() < full && kept.ends_with(b"\n"));
        assert_eq!(String::from_utf8(kept).unwrap().lines().count(), 2);
    }

    #[test]
    fn a_later_entry_replaces_an_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path()).unwrap();
        j.append(&[(5, &Entry::Failed("x".into()))]).unwrap();
        let d = done(5, 0.25);
        j.append(&[(5, &d)]).unwrap();
        drop(j);
        // Read alone, the file stays as it is (two lines); resumed, it is compacted.
        let path = dir.path().join(FILE);
        let before = std::fs::read(&path).unwrap();
        assert_eq!(Journal::entries(dir.path()).unwrap()[&5], d);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let mut j = Journal::resume(dir.path(), &[vec![5]]).unwrap();
        assert_eq!(j.take(5), Some(d));
        assert_eq!(
            String::from_utf8(std::fs::read(&path).unwrap())
                .unwrap()
                .lines()
                .count(),
            1
        );
    }
}
