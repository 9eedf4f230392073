//! Study files: the checks `personas::study::load` runs on a user's TOML (it reads the file,
//! requires UTF-8 and calls `parse`), then what the runner asks of a checked study before a
//! model is involved: the people (for small populations), their prompts, the answer schema.
//!
//! The study is parsed as if it lived in the repository's `examples/`, so a mutated
//! `csv = "privacy-calculus-people.csv"` still finds its CSV there (read only).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use personas::study;

/// Populations at most this big are generated and rendered; larger ones are only checked
/// (the checks cap a study at a million people, which would be slow, not wrong, per input).
const MAX_RENDERED: usize = 64;

fn study_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("examples")
            .join("fuzz-input.toml")
    })
}

/// `FUZZ_VERBOSE=1`: say how far each input got (to check seeds and regressions).
fn verbose() -> bool {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("FUZZ_VERBOSE").is_some())
}

fuzz_target!(|data: &[u8]| {
    // `load` rejects non-UTF-8 before parsing; the parser only ever sees text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let study = match study::parse(text, study_path()) {
        Ok(study) => study,
        Err(e) => {
            if verbose() {
                eprintln!("parse: {e}");
            }
            return;
        }
    };
    if verbose() {
        eprintln!("parse: ok ({} people)", study.population.size());
    }
    let _ = study.attribute_names();
    let _ = study.answer_schema();
    let _ = study.answer_keys();
    let _ = study.together_prompt();
    let _ = study.parse_together("{}");
    let _ = study.sample_seed(1, 0);
    if study.population.size() <= MAX_RENDERED {
        if let Ok(people) = study.population() {
            for person in &people {
                let _ = study.opening(person);
            }
        }
    }
});
