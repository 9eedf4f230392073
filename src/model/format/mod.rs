//! Checkpoint files into the network of [`super::net`]: GGUF (llama.cpp's format, quantized)
//! and Hugging Face safetensors.

pub mod gguf;
pub mod safetensors;
