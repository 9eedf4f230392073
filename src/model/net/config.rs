//! The network's hyper-parameters and the rotary embedding's frequencies they give.

/// Hyper-parameters, named as in Hugging Face's `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Training context length; a hint for users, never a cap (the cache grows on demand).
    pub max_position_embeddings: usize,
    /// Llama 3.x frequency scaling, already folded into per-pair divisors.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// Linear position scaling (`rope.scaling.type = linear`).
    pub rope_linear_factor: Option<f64>,
    /// True for GGUF (adjacent pairs), false for Hugging Face layouts (rotate halves).
    pub rope_interleaved: bool,
}

impl Config {
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Inverse frequencies per rotary pair, with Llama 3 scaling and linear scaling applied.
    pub fn inv_freq(&self) -> Vec<f64> {
        let half = self.head_dim / 2;
        (0..half)
            .map(|i| {
                let mut f = 1.0 / self.rope_theta.powf(2.0 * i as f64 / self.head_dim as f64);
                if let Some(factors) = &self.rope_freq_factors {
                    f /= factors.get(i).copied().unwrap_or(1.0) as f64;
                }
                if let Some(linear) = self.rope_linear_factor {
                    f /= linear;
                }
                f
            })
            .collect()
    }
}

/// Llama 3 rope scaling as Hugging Face describes it in `config.json`, turned into the per-pair
/// divisors that llama.cpp stores as `rope_freqs.weight`, so both formats share one code path.
pub fn llama3_freq_factors(
    head_dim: usize,
    rope_theta: f64,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_max_position: f64,
) -> Vec<f32> {
    let low_wavelen = original_max_position / low_freq_factor;
    let high_wavelen = original_max_position / high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / rope_theta.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let scaled = if wavelen < high_wavelen {
                freq
            } else if wavelen > low_wavelen {
                freq / factor
            } else {
                let smooth = (original_max_position / wavelen - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                (1.0 - smooth) * freq / factor + smooth * freq
            };
            (freq / scaled) as f32
        })
        .collect()
}
