//! Engine speed on the test model (SmolLM2-135M-Instruct Q4_1), the workloads of issues 2 and 3:
//!
//! * `prefill/256`: one prompt of 256 tokens into an empty cache (tokens/s);
//! * `decode/1x32`: 32 greedy tokens of one sequence after a 256-token prompt (tokens/s);
//! * `sample/64x128`: 64 samples of 128 tokens from one shared prompt, decoded together
//!   (tokens/s over all rows; end tokens ignored so every row runs the full 128);
//! * `survey/privacy-calculus-exact`: the workshop's privacy-calculus survey, items asked one by
//!   one and scored exactly over "1".."7", for 8 respondents (answers/s).
//!
//! The model is found as the tests find it: `PERSONAS_TEST_GGUF`, which `scripts/test` sets, or
//! else the Hugging Face cache where `personas download smollm2-135m` puts it.
//!
//!     cargo bench --bench engine [-- FILTER]

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use personas::engine::generate::{prefill, sample_many};
use personas::engine::sampling::argmax;
use personas::engine::SamplingParams;
use personas::model::{LogitsAt, Model, ModelFiles};
use personas::runner::{run, RunSettings};

fn gguf() -> PathBuf {
    if let Some(p) = std::env::var_os("PERSONAS_TEST_GGUF") {
        return PathBuf::from(p);
    }
    let hub = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .unwrap_or_else(|| {
            dirs::home_dir()
                .expect("a home directory")
                .join(".cache/huggingface/hub")
        });
    let path = hub.join(
        "models--QuantFactory--SmolLM2-135M-Instruct-GGUF/snapshots/\
         ab810cf68114990406fdf996510dd3d3c6adbdf5/SmolLM2-135M-Instruct.Q4_1.gguf",
    );
    assert!(
        path.exists(),
        "test model missing: run `personas download smollm2-135m` or set PERSONAS_TEST_GGUF"
    );
    path
}

fn model(batch_invariant: bool) -> Model {
    let files = ModelFiles::Gguf {
        path: gguf(),
        tokenizer: None,
    };
    // What the CLI does by default (`--kernels auto --dense-mb 2048`).
    let options = personas::model::LoadOptions {
        dense_max_bytes: 2048 << 20,
        ..Default::default()
    };
    let mut model = Model::load(&files, &candle_core::Device::Cpu, None, options).expect("load");
    model.llama.set_batch_invariant(batch_invariant);
    model
}

fn prompt(model: &Model, n: usize) -> Vec<u32> {
    let text =
        "The survey asked farmers, teachers and nurses how they feel about prices, schools, \
                hospitals and the weather. ";
    let piece = model.tokenizer.encode(text, false).expect("encode");
    piece.iter().copied().cycle().take(n).collect()
}

fn single_sequence(c: &mut Criterion) {
    let model = model(false);
    let llama = &model.llama;
    let ids = prompt(&model, 256);
    let mut g = c.benchmark_group("prefill");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.bench_function("256", |b| {
        b.iter(|| {
            let mut cache = llama.new_cache(1, ids.len()).unwrap();
            prefill(llama, &mut cache, &ids).unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    g.throughput(Throughput::Elements(32));
    let mut base = llama.new_cache(1, ids.len() + 40).unwrap();
    let first = prefill(llama, &mut base, &ids).unwrap();
    g.bench_function("1x32", |b| {
        b.iter(|| {
            let mut cache = base.repeat_rows(1, 40).unwrap();
            let mut logits = first.clone();
            for _ in 0..32 {
                let next = argmax(&logits) as u32;
                let out = llama
                    .forward(&[vec![next]], &mut cache, LogitsAt::Last)
                    .unwrap();
                logits = out.squeeze(0).unwrap().to_vec1().unwrap();
            }
            logits
        })
    });
    g.finish();
}

fn batched(c: &mut Criterion) {
    let model = model(true);
    let llama = &model.llama;
    let ids = prompt(&model, 64);
    let params = SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: None,
        seed: 1,
        max_tokens: 128,
    };
    let mut g = c.benchmark_group("sample");
    g.sample_size(10);
    g.throughput(Throughput::Elements(64 * 128));
    g.bench_function("64x128", |b| {
        b.iter(|| sample_many(llama, &ids, &params, &[], 64, 64).unwrap())
    });
    g.finish();

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/privacy-calculus-separate.toml"))
        .expect("example study");
    let text = text.replacen("size = 50", "size = 8", 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("survey.toml");
    std::fs::write(&path, text).unwrap();
    let mut study = personas::study::load(&path).expect("study");
    study.sampling.mode = personas::study::Mode::Exact;
    let answers = 8 * study.questions.len() as u64;
    let mut g = c.benchmark_group("survey");
    g.sample_size(10);
    g.throughput(Throughput::Elements(answers));
    g.bench_function("privacy-calculus-exact", |b| {
        b.iter(|| {
            let settings = RunSettings {
                out_dir: dir.path().join("out"),
                batch: 64,
                progress: false,
                resume: None,
                retry_failed: false,
                shard: None,
            };
            run(
                &study,
                &model,
                None,
                &settings,
                &AtomicBool::new(false),
                0.0,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, single_sequence, batched);
criterion_main!(benches);
