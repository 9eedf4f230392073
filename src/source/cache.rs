//! The Hugging Face cache layout on disk (`models--owner--name/` with `blobs/`,
//! `snapshots/<commit>/` and `refs/`): finding a file, checking it, linking and removing it.

use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};
use std::{fs, io};

use super::error::{io_err, HubError};
use super::request::{FileRequest, HubSettings};

/// `<cache>/models--owner--name`, named as `huggingface_hub` names it.
pub(super) fn repo_dir(settings: &HubSettings, repo: &str) -> PathBuf {
    let folder = format!("models--{}", repo.replace('/', "--"));
    settings.cache_dir.join(folder)
}

pub(super) fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) fn resolve_ref(repo_dir: &Path, revision: &str) -> Option<String> {
    if is_commit_hash(revision) {
        return Some(revision.to_ascii_lowercase());
    }
    let commit = fs::read_to_string(repo_dir.join("refs").join(revision)).ok()?;
    let commit = commit.trim();
    is_relative_name(commit).then(|| commit.to_string())
}

/// A non-empty relative path without `..`, so it cannot escape the cache when joined.
pub(super) fn is_relative_name(name: &str) -> bool {
    let normal = |c: Component| matches!(c, Component::Normal(_));
    !name.is_empty() && !name.contains('\\') && Path::new(name).components().all(normal)
}

pub(super) fn validate(req: &FileRequest) -> Result<(), String> {
    let (repo, rev, file) = (&req.repo, &req.revision, &req.file);
    if req.repo.split('/').count() != 2 || !is_relative_name(repo) {
        return Err(format!("repo `{repo}` is not of the form `owner/name`"));
    }
    if !is_relative_name(rev) || !is_relative_name(file) {
        return Err(format!(
            "revision `{rev}` and file `{file}` must be relative, without `..`"
        ));
    }
    match &req.sha256 {
        Some(s) if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Err(format!("sha256 `{s}` is not 64 hex digits"))
        }
        _ => Ok(()),
    }
}

/// `None` when the cached file is acceptable. A blob named by the expected sha256 is trusted
/// without rereading it: the hub names LFS blobs by their sha256, and every blob this module
/// writes was verified first; so a cache hit stays cheap even for a 40 GB file. Other blobs
/// (small non-LFS files, named by git hash) are hashed.
pub(super) fn check_cached(
    path: &Path,
    req: &FileRequest,
    label: &str,
) -> Result<Option<HubError>, HubError> {
    let Some(expected) = &req.sha256 else {
        return Ok(None);
    };
    let blob = fs::canonicalize(path).map_err(io_err(label, "cannot resolve the cached file"))?;
    let name = blob.file_name().unwrap_or_default().to_string_lossy();
    if name.eq_ignore_ascii_case(expected) {
        return Ok(None);
    }
    let actual = sha256_file(&blob).map_err(io_err(label, "cannot read the cached file"))?;
    let matches = actual.eq_ignore_ascii_case(expected);
    Ok((!matches).then(|| checksum_error(label, req, actual, false)))
}

pub(super) fn checksum_error(
    label: &str,
    req: &FileRequest,
    actual: String,
    removed: bool,
) -> HubError {
    let expected = req.sha256.clone().unwrap_or_default();
    HubError::Checksum {
        label: label.into(),
        what: req.what(),
        expected,
        actual,
        removed,
    }
}

pub(super) fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Deletes a rejected download: the blob (with hf-hub's `.lock` file beside it), the snapshot
/// link, then the snapshot folders and refs left empty or dangling, so the cache holds neither
/// a corrupt file nor a ref to a missing snapshot.
pub(super) fn remove_download(repo_dir: &Path, pointer: &Path) {
    if let Ok(blob) = fs::canonicalize(pointer) {
        let _ = fs::remove_file(blob.with_extension("lock"));
        let _ = fs::remove_file(&blob);
    }
    let _ = fs::remove_file(pointer);
    let snapshots = repo_dir.join("snapshots");
    let mut dir = pointer.parent();
    while let Some(d) = dir.filter(|d| d.starts_with(&snapshots) && *d != snapshots) {
        if fs::remove_dir(d).is_err() {
            return; // other files of this snapshot remain, and so do its refs
        }
        dir = d.parent();
    }
    let commit = pointer
        .strip_prefix(&snapshots)
        .ok()
        .and_then(|p| p.iter().next());
    let refs = fs::read_dir(repo_dir.join("refs"))
        .into_iter()
        .flatten()
        .flatten();
    for entry in refs {
        let target = fs::read_to_string(entry.path()).unwrap_or_default();
        if Some(std::ffi::OsStr::new(target.trim())) == commit {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Points `snapshots/<commit>/<file>` at the blob with a relative symlink, as
/// `huggingface_hub` does (`../../blobs/<sha256>`).
pub(super) fn link_blob(blob: &Path, pointer: &Path) -> io::Result<()> {
    let dir = pointer.parent().unwrap_or(pointer);
    fs::create_dir_all(dir)?;
    if fs::symlink_metadata(pointer).is_ok() {
        fs::remove_file(pointer)?;
    }
    // Up from the pointer's folder to the repo folder, then down into blobs/.
    let repo_dir = blob.parent().and_then(Path::parent).unwrap_or(dir);
    let depth = dir
        .strip_prefix(repo_dir)
        .map_or(2, |rest| rest.iter().count());
    let mut target: PathBuf = std::iter::repeat_n("..", depth).collect();
    target.extend([
        Path::new("blobs"),
        Path::new(blob.file_name().unwrap_or_default()),
    ]);
    #[cfg(unix)]
    let linked = std::os::unix::fs::symlink(&target, pointer);
    // Symlinks need extra rights on Windows; a copy works everywhere.
    #[cfg(not(unix))]
    let linked = fs::copy(blob, pointer).map(drop);
    linked
}
