//! KV cache forks on the test model: rows forked from a computed prefix read it in place (no
//! copy), and give the same numbers as sequences computed on their own, however the parent is
//! used afterwards.

use crate::common;

use personas::model::{gguf, Cache, Kernels, Llama, LogitsAt};

fn load() -> Llama {
    let path = common::test_gguf();
    let content = gguf::read_content(&path).unwrap();
    gguf::load(
        &path,
        &content,
        &candle_core::Device::Cpu,
        Kernels::detect(),
    )
    .unwrap()
}

/// Logits after feeding `steps` (one token per row per step) to `cache`.
fn feed(llama: &Llama, cache: &mut Cache, steps: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let mut last = Vec::new();
    for step in steps {
        let tokens: Vec<Vec<u32>> = step.iter().map(|&t| vec![t]).collect();
        last = llama
            .forward(&tokens, cache, LogitsAt::Last)
            .unwrap()
            .to_vec2()
            .unwrap();
    }
    last
}

/// Each row's sequence computed alone: the prompt in one pass, then its tokens one by one.
fn alone(llama: &Llama, prompt: &[u32], rows: &[Vec<u32>]) -> Vec<Vec<f32>> {
    rows.iter()
        .map(|tokens| {
            let mut cache = llama.new_cache(1, 8).unwrap();
            llama
                .forward(&[prompt.to_vec()], &mut cache, LogitsAt::Last)
                .unwrap();
            let steps: Vec<Vec<u32>> = tokens.iter().map(|&t| vec![t]).collect();
            feed(llama, &mut cache, &steps).remove(0)
        })
        .collect()
}

/// Bit-for-bit equality of logits rows, reported briefly.
fn same(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        let worst = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(g == w, "{what}: row {r} differs (max {worst})");
    }
}

const PROMPT: [u32; 12] = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 30, 2, 198, 1];

/// A one-row cache holding [`PROMPT`].
fn prompt_cache(llama: &Llama) -> Cache {
    let mut cache = llama.new_cache(1, 8).unwrap();
    llama
        .forward(&[PROMPT.to_vec()], &mut cache, LogitsAt::Last)
        .unwrap();
    cache
}

#[test]
fn forks_share_the_prefix_and_match_sequences_computed_alone() {
    let llama = load();
    let parent = prompt_cache(&llama);
    let rows = vec![vec![28, 30, 42], vec![314, 30, 42], vec![28, 314, 2]];
    let mut forked = parent.repeat_rows(rows.len(), 4).unwrap();
    assert_eq!(
        forked.shared_len(),
        PROMPT.len(),
        "the prompt is read in place"
    );
    let steps: Vec<Vec<u32>> = (0..3)
        .map(|i| rows.iter().map(|r| r[i]).collect())
        .collect();
    let got = feed(&llama, &mut forked, &steps);
    same(&got, &alone(&llama, &PROMPT, &rows), "forks");

    // A fork of a fork (a persona after the system prompt, then its questions), with rows
    // leaving the batch: still the numbers of each sequence on its own.
    let mut second = forked.rows(&[2, 0, 0]).unwrap();
    assert_eq!(second.shared_len(), PROMPT.len() + 3);
    let more = feed(&llama, &mut second, &[vec![5, 6, 7]]);
    second.retain_rows(&[2]).unwrap();
    let last = feed(&llama, &mut second, &[vec![8]]);
    let full = |r: &[u32], extra: &[u32]| [r, extra].concat();
    let want = alone(
        &llama,
        &PROMPT,
        &[
            full(&rows[2], &[5]),
            full(&rows[0], &[6]),
            full(&rows[0], &[7, 8]),
        ],
    );
    same(&more[..2], &want[..2], "fork of a fork");
    same(&last, &want[2..], "after rows left");
}

#[test]
fn a_parent_rewound_and_reused_leaves_its_forks_intact() {
    let llama = load();
    let mut parent = prompt_cache(&llama);
    let mut forked = parent.repeat_rows(2, 4).unwrap();
    // The parent forgets its last 4 positions and writes other tokens there (as chat does when
    // a conversation changes), while the forks still read the original prompt.
    parent.truncate(PROMPT.len() - 4).unwrap();
    llama
        .forward(
            &[vec![100, 101, 102, 103, 104]],
            &mut parent,
            LogitsAt::Last,
        )
        .unwrap();
    let rows = vec![vec![28, 30], vec![314, 2]];
    let steps: Vec<Vec<u32>> = (0..2)
        .map(|i| rows.iter().map(|r| r[i]).collect())
        .collect();
    same(
        &feed(&llama, &mut forked, &steps),
        &alone(&llama, &PROMPT, &rows),
        "forks after the parent changed",
    );
    // And the parent computes its own new sequence correctly.
    let mut changed = PROMPT[..PROMPT.len() - 4].to_vec();
    changed.extend([100, 101, 102, 103, 104]);
    let parent_next = feed(&llama, &mut parent, &[vec![7]]);
    same(
        &parent_next,
        &alone(&llama, &changed, &[vec![7]]),
        "parent after rewind",
    );
}

#[test]
fn candle_attention_reads_a_shared_prefix_too() {
    // A fork made while the CPU kernel was on, continued through candle's attention (which
    // puts the segments together), against the parent itself continuing the same way.
    let mut llama = load();
    let mut parent = prompt_cache(&llama);
    let mut forked = parent.repeat_rows(2, 4).unwrap();
    llama.set_cpu_attention(false);
    let rows = [vec![28, 30], vec![314, 2]];
    let steps: Vec<Vec<u32>> = (0..2)
        .map(|i| rows.iter().map(|r| r[i]).collect())
        .collect();
    let got = feed(&llama, &mut forked, &steps);
    let own: Vec<Vec<u32>> = rows[1].iter().map(|&t| vec![t]).collect();
    let want = feed(&llama, &mut parent, &own);
    let worst = got[1]
        .iter()
        .zip(&want[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "max difference {worst}");
}
