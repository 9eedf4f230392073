//! GGUF files: what `personas` does with a user's GGUF before any weight is loaded.
//! `model::gguf::read_content` (candle's header reader plus personas' check that every
//! tensor lies inside the file), then `model::gguf::config` (hyper-parameters from the
//! `llama.*` metadata, reading `rope_freqs.weight` if listed) and `Tokenizer::from_gguf`
//! (the tokenizer from `tokenizer.ggml.*`), as `model::load_tokenizer` and `Model::load` do,
//! then `Config::inv_freq` (the RoPE table `Llama::new` builds from the config) and a short
//! encode/decode with the tokenizer.
//!
//! `read_content` takes a path, so each input is written to a per-process scratch file
//! (in /dev/shm when there is one).
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use personas::model::gguf;
use personas::tokenizer::Tokenizer;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("personas-fuzz-gguf-{}.gguf", std::process::id()))
    })
}

/// `FUZZ_VERBOSE=1`: say how far each input got (to check seeds and regressions).
fn verbose() -> bool {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("FUZZ_VERBOSE").is_some())
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    {
        let mut file = std::fs::File::create(path).expect("create the scratch file");
        file.write_all(data).expect("write the scratch file");
    }
    let content = match gguf::read_content(path) {
        Ok(content) => content,
        Err(e) => {
            if verbose() {
                eprintln!("read_content: {e}");
            }
            return;
        }
    };
    let config = gguf::config(&content, path, &Device::Cpu);
    if let Ok(config) = &config {
        // The first thing `Llama::new` computes from the metadata, once the weights are in.
        let _ = config.inv_freq();
    }
    let tokenizer = Tokenizer::from_gguf(&content);
    if verbose() {
        match &config {
            Ok(c) => eprintln!(
                "config: ok ({} layers, vocab {})",
                c.num_hidden_layers, c.vocab_size
            ),
            Err(e) => eprintln!("config: {e}"),
        }
        match &tokenizer {
            Ok(t) => eprintln!("tokenizer: ok (vocab {})", t.vocab_size()),
            Err(e) => eprintln!("tokenizer: {e}"),
        }
    }
    if let Ok(tokenizer) = tokenizer {
        if let Ok(ids) = tokenizer.encode("Hello, world! <|im_end|> 12345 ünïcödé", true) {
            let _ = tokenizer.decode(&ids, false);
            let _ = tokenizer.decode(&ids, true);
        }
        let _ = tokenizer.stop_ids();
        let _ = tokenizer.bos_token();
        let _ = tokenizer.eos_token();
        for id in 0..tokenizer.vocab_size().min(16) as u32 {
            let _ = tokenizer.token_text(id);
        }
    }
});
