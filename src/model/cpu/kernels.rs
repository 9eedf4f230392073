//! Which kernels run the projections on the CPU: what this CPU can run, what the user asked
//! for, and the name and features a run's manifest records.

use std::fmt;
use std::str::FromStr;

#[cfg(target_arch = "x86_64")]
use super::{amx, avx2, avx512};

/// Which kernels run the projections on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernels {
    /// AVX-512 VNNI, and AMX tiles for calls with rows enough to pay for them (prefill,
    /// surveys; `amx::pays`).
    Amx,
    /// personas' packed kernels with AVX-512 VNNI.
    Avx512,
    /// personas' packed kernels with AVX2 and FMA, for CPUs without AVX-512 (same bits).
    Avx2,
    /// personas' packed kernels in plain Rust (any CPU; the same bits as AVX-512, slower).
    Portable,
    /// candle's quantized matmuls (and dense copies within `--dense-mb`): what GPUs run.
    Candle,
}

impl Kernels {
    /// The fastest this CPU has.
    pub fn detect() -> Self {
        [Kernels::Amx, Kernels::Avx512, Kernels::Avx2]
            .into_iter()
            .find(|k| k.available())
            .unwrap_or(Kernels::Portable)
    }

    /// Whether this CPU can run them.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernels::Amx => amx::available(),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 => avx512::available(),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => avx2::available(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernels::Amx | Kernels::Avx512 | Kernels::Avx2 => false,
            Kernels::Portable | Kernels::Candle => true,
        }
    }

    /// Whether weights are packed for personas' kernels (rather than left to candle).
    pub fn packs(self) -> bool {
        !matches!(self, Kernels::Candle)
    }

    /// The instruction-set extensions these kernels use, for run manifests.
    pub fn features(self) -> &'static [&'static str] {
        const AVX512: [&str; 4] = ["avx512f", "avx512bw", "avx512vnni", "f16c"];
        match self {
            Kernels::Amx => &[
                AVX512[0],
                AVX512[1],
                AVX512[2],
                AVX512[3],
                "avx512vbmi",
                "amx-tile",
                "amx-int8",
            ],
            Kernels::Avx512 => &AVX512,
            Kernels::Avx2 => &["avx2", "fma", "f16c"],
            Kernels::Portable | Kernels::Candle => &[],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernels::Amx => "amx",
            Kernels::Avx512 => "avx512",
            Kernels::Avx2 => "avx2",
            Kernels::Portable => "portable",
            Kernels::Candle => "candle",
        }
    }
}

impl fmt::Display for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `auto` or a [`Kernels`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelChoice(pub Option<Kernels>);

impl KernelChoice {
    /// The kernels to run: the named ones if this CPU has them, else an error naming what it
    /// has.
    pub fn resolve(self) -> Result<Kernels, String> {
        match self.0 {
            None => Ok(Kernels::detect()),
            Some(k) if k.available() => Ok(k),
            Some(k) => Err(format!(
                "this CPU cannot run the `{k}` kernels; it can run `{}`, `portable` or `candle`",
                Kernels::detect()
            )),
        }
    }
}

impl FromStr for KernelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(KernelChoice(match s {
            "auto" => None,
            "amx" => Some(Kernels::Amx),
            "avx512" => Some(Kernels::Avx512),
            "avx2" => Some(Kernels::Avx2),
            "portable" => Some(Kernels::Portable),
            "candle" => Some(Kernels::Candle),
            _ => {
                return Err(format!(
                    "`{s}`: expected auto, amx, avx512, avx2, portable or candle"
                ))
            }
        }))
    }
}
