//! A CPU tensor's values, for the kernels that read them in place.

/// Runs `f` on the values of a contiguous f32 tensor on the CPU.
pub fn with_cpu_f32<R>(
    t: &candle_core::Tensor,
    f: impl FnOnce(&[f32]) -> R,
) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("expected a tensor on the CPU");
    };
    if !layout.is_contiguous() {
        candle_core::bail!("expected a contiguous tensor");
    }
    Ok(f(
        &cpu.as_slice::<f32>()?[layout.start_offset()..][..t.elem_count()]
    ))
}
