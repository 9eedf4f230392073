//! The network's weights as the forward pass sees them: projections ([`Linear`]) and the token
//! table ([`Embedding`]), whichever kernels hold them.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use crate::model::cpu::with_cpu_f32;
use crate::model::cpu::{self, Half, Kernels, Packed};

/// Dense products of at least this many rows give each row the same result whatever the count.
pub const BATCH_INVARIANT_ROWS: usize = 16;

/// How one forward pass runs its projections.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Rows below which a dense product is padded (see `Llama::set_batch_invariant`).
    pub min_rows: usize,
    pub kernels: Kernels,
}

/// Where a projection's weights are.
#[derive(Debug, Clone)]
enum Weight {
    /// Stored blocks for personas' CPU kernels ([`cpu::quant`]): the file's bytes, regrouped.
    Packed(Arc<Packed>),
    /// bf16 or f16 weights as stored, for personas' CPU kernels ([`cpu::half`]).
    Half(Arc<Half>),
    /// candle's quantized or dense matmul (GPUs, formats personas does not pack, dense
    /// checkpoints), with an optional dense f32 copy for speed on the CPU.
    Candle {
        inner: QMatMul,
        dense: Option<Tensor>,
    },
}

/// A projection `x -> x W^T`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
}

impl Linear {
    /// A projection through candle (dense or quantized).
    pub fn new(inner: QMatMul) -> Self {
        Self {
            weight: Weight::Candle { inner, dense: None },
        }
    }

    /// A quantized weight: packed for `kernels` when they pack its format on the CPU (the
    /// tensor is then dropped), else left to candle. (GGUF's F16 and BF16 never get here on the
    /// CPU: the loader reads them straight into [`Half`].)
    pub fn from_qtensor(q: QTensor, kernels: Kernels) -> candle_core::Result<Self> {
        if kernels.packs() && q.device().is_cpu() {
            if let Some(p) = Packed::from_qtensor(&q)? {
                return Ok(Self::packed(Arc::new(p)));
            }
        }
        Ok(Self::new(QMatMul::from_qtensor(q)?))
    }

    pub fn half(h: Arc<Half>) -> Self {
        Self {
            weight: Weight::Half(h),
        }
    }

    pub fn as_half(&self) -> Option<&Arc<Half>> {
        match &self.weight {
            Weight::Half(h) => Some(h),
            _ => None,
        }
    }

    pub fn packed(p: Arc<Packed>) -> Self {
        Self {
            weight: Weight::Packed(p),
        }
    }

    pub fn as_packed(&self) -> Option<&Arc<Packed>> {
        match &self.weight {
            Weight::Packed(p) => Some(p),
            _ => None,
        }
    }

    pub fn forward(&self, xs: &Tensor, run: Run) -> candle_core::Result<Tensor> {
        match &self.weight {
            Weight::Packed(p) => packed_forward(p, xs, run.kernels),
            Weight::Half(h) => half_forward(h, xs, run.kernels),
            Weight::Candle { inner, dense } => candle_forward(inner, dense.as_ref(), xs, run),
        }
    }

    /// Bytes a dense f32 copy of a quantized weight would take (0 when dense or packed).
    pub(super) fn dense_bytes(&self) -> usize {
        match &self.weight {
            Weight::Candle {
                inner: QMatMul::QTensor(q),
                dense: None,
            } => q.shape().elem_count() * 4,
            _ => 0,
        }
    }

    pub(super) fn densify(&mut self, device: &Device) -> candle_core::Result<()> {
        if let Weight::Candle {
            inner: QMatMul::QTensor(q),
            dense,
        } = &mut self.weight
        {
            if dense.is_none() {
                *dense = Some(q.dequantize(device)?);
            }
        }
        Ok(())
    }
}

fn candle_forward(
    inner: &QMatMul,
    dense: Option<&Tensor>,
    xs: &Tensor,
    run: Run,
) -> candle_core::Result<Tensor> {
    let Some(w) = dense else {
        return inner.forward(xs);
    };
    #[cfg(openblas)]
    if let Some(out) = cpu::blas::matmul_t(xs, w, run.min_rows)? {
        return Ok(out);
    }
    let dims = xs.dims().to_vec();
    let k = *dims.last().unwrap_or(&0);
    let rows = xs.elem_count() / k.max(1);
    if rows >= run.min_rows {
        return xs.broadcast_matmul(&w.t()?);
    }
    let flat = xs.reshape((rows, k))?;
    let pad = Tensor::zeros((run.min_rows - rows, k), xs.dtype(), xs.device())?;
    let out = Tensor::cat(&[&flat, &pad], 0)?.matmul(&w.t()?)?;
    let mut out_dims = dims;
    *out_dims.last_mut().expect("dims") = w.dim(0)?;
    out.narrow(0, 0, rows)?.reshape(out_dims)
}

/// `xs (.., k) x w^T` through personas' kernels.
fn packed_forward(w: &Arc<Packed>, xs: &Tensor, kernels: Kernels) -> candle_core::Result<Tensor> {
    let [out] = packed_parts(std::array::from_ref(w), xs, kernels)?;
    let mut dims = xs.dims().to_vec();
    *dims.last_mut().expect("at least one dim") = w.n();
    Tensor::from_vec(out, dims, xs.device())
}

/// `xs (.., k) x w^T` through [`cpu::half`].
fn half_forward(w: &Half, xs: &Tensor, kernels: Kernels) -> candle_core::Result<Tensor> {
    if !xs.device().is_cpu() {
        candle_core::bail!("half-precision weights of personas' kernels take inputs on the CPU");
    }
    let xs = xs.to_dtype(DType::F32)?.contiguous()?;
    let out = with_cpu_f32(&xs, |data| cpu::half::gemm(w, data, kernels))?;
    let mut dims = xs.dims().to_vec();
    *dims.last_mut().expect("at least one dim") = w.n();
    Tensor::from_vec(out, dims, xs.device())
}

/// `xs (.., k)` through weights that read the same input ([`cpu::gemm_parts`]): one
/// row-major output per part.
pub(super) fn packed_parts<const N: usize>(
    parts: &[Arc<Packed>; N],
    xs: &Tensor,
    kernels: Kernels,
) -> candle_core::Result<[Vec<f32>; N]> {
    if !xs.device().is_cpu() || xs.dtype() != DType::F32 {
        candle_core::bail!("packed weights take f32 inputs on the CPU");
    }
    let xs = xs.contiguous()?;
    let refs: Vec<&Packed> = parts.iter().map(|p| p.as_ref()).collect();
    let outs = with_cpu_f32(&xs, |data| cpu::gemm_parts(&refs, data, kernels))?;
    Ok(outs.try_into().expect("one output per part"))
}

/// Token embeddings: quantized tables are looked up row by row without dequantizing the whole.
#[derive(Debug, Clone)]
pub enum Embedding {
    Quantized(Arc<QTensor>),
    /// The packed table, shared with the output head when the two are tied.
    Packed(Arc<Packed>),
    /// A bf16 or f16 table as stored, likewise shared with a tied head.
    Half(Arc<Half>),
    Dense(Tensor),
}

impl Embedding {
    pub(super) fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Embedding::Quantized(q) => q.embedding(ids),
            Embedding::Packed(p) => lookup(ids, p.n(), p.k(), |i| p.row(i)),
            Embedding::Half(h) => lookup(ids, h.n(), h.k(), |i| h.row(i)),
            Embedding::Dense(t) => {
                let mut shape = ids.dims().to_vec();
                shape.push(t.dim(1)?);
                t.index_select(&ids.flatten_all()?, 0)?.reshape(shape)
            }
        }
    }
}

/// The rows `ids` of an (n, k) table whose row `i` is `row(i)`, shaped `ids`' dims + (k).
fn lookup<R: IntoIterator<Item = f32>>(
    ids: &Tensor,
    n: usize,
    k: usize,
    row: impl Fn(usize) -> R,
) -> candle_core::Result<Tensor> {
    let list = ids.flatten_all()?.to_vec1::<u32>()?;
    let mut data = Vec::with_capacity(list.len() * k);
    for &id in &list {
        if id as usize >= n {
            candle_core::bail!("token id {id} is out of range for {n} rows");
        }
        data.extend(row(id as usize));
    }
    let mut shape = ids.dims().to_vec();
    shape.push(k);
    Tensor::from_vec(data, shape, ids.device())
}
