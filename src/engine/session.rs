//! A conversation with a model: messages rendered through the chat template, with the KV cache
//! kept between turns. Each turn re-renders the whole conversation (templates may change earlier
//! text, e.g. Llama 3's date lines) and computes only the tokens after the longest prefix the
//! cache already holds.

use crate::chat::{ChatTemplate, Message};
use crate::model::{Cache, Model};

use super::error::EngineError;
use super::generate::{continue_generation, prefill, Generation};
use super::sampling::SamplingParams;

pub struct ChatSession<'m> {
    model: &'m Model,
    template: ChatTemplate,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    cache: Option<Cache>,
    cached: Vec<u32>,
    turns: usize,
}

impl<'m> ChatSession<'m> {
    pub fn new(model: &'m Model, system: Option<String>) -> Result<Self, EngineError> {
        let template = model_template(model)?;
        Ok(Self {
            model,
            template,
            system,
            messages: Vec::new(),
            cache: None,
            cached: Vec::new(),
            turns: 0,
        })
    }

    /// Forgets the conversation (the system prompt stays).
    pub fn reset(&mut self) {
        self.messages.clear();
        self.turns = 0;
    }

    /// All messages, the system prompt first.
    pub fn transcript(&self) -> Vec<Message> {
        let mut all = Vec::with_capacity(self.messages.len() + 1);
        if let Some(s) = &self.system {
            all.push(Message::new("system", s));
        }
        all.extend(self.messages.iter().cloned());
        all
    }

    /// The token ids of the conversation so far plus the assistant's generation prompt.
    pub fn prompt_ids(&self) -> Result<Vec<u32>, EngineError> {
        render_ids(self.model, &self.template, &self.transcript(), true)
    }

    /// Adds a user turn and generates the assistant's answer, streaming token ids to
    /// `on_token`. The answer is appended to the conversation.
    pub fn send(
        &mut self,
        user: &str,
        params: &SamplingParams,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<(String, Generation), EngineError> {
        self.messages.push(Message::new("user", user));
        let ids = self.prompt_ids()?;
        let llama = &self.model.llama;
        let common = self
            .cached
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count()
            // At least one token must be computed to have logits to sample from.
            .min(ids.len() - 1);
        let mut cache = match self.cache.take() {
            Some(mut c) if common > 0 => {
                c.truncate(common)?;
                c
            }
            _ => llama.new_cache(1, ids.len() + params.max_tokens)?,
        };
        let start = cache.len();
        let logits = prefill(llama, &mut cache, &ids[start..])?;
        // Each turn draws from its own stream so a conversation is reproducible turn by turn.
        let generation = continue_generation(
            llama,
            &mut cache,
            logits,
            params,
            &self.model.tokenizer.stop_ids(),
            self.turns,
            on_token,
        )?;
        self.turns += 1;
        let mut cached = ids;
        cached.extend_from_slice(&generation.tokens);
        // The last sampled token was never run through the model.
        if !generation.tokens.is_empty() {
            cached.pop();
        }
        self.cached = cached;
        self.cache = Some(cache);
        let text = self
            .model
            .tokenizer
            .decode(&generation.tokens, true)
            .map_err(EngineError::Tokenizer)?;
        self.messages.push(Message::new("assistant", text.trim()));
        Ok((text, generation))
    }
}

/// The model's chat template, or ChatML when the checkpoint has none.
pub fn model_template(model: &Model) -> Result<ChatTemplate, EngineError> {
    let source = model.chat_template.clone();
    match source {
        Some(s) => ChatTemplate::new(&s),
        None => Ok(ChatTemplate::chatml()),
    }
    .map_err(EngineError::Template)
}

/// Renders `messages` and tokenizes the result, special tokens parsed; BOS is added where the
/// model's metadata asks for it and the template did not write it already.
pub fn render_ids(
    model: &Model,
    template: &ChatTemplate,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, EngineError> {
    let tok = &model.tokenizer;
    let bos = tok.bos_token().map(|(_, s)| s).unwrap_or_default();
    let eos = tok.eos_token().map(|(_, s)| s).unwrap_or_default();
    let text = template
        .render(messages, add_generation_prompt, &bos, &eos)
        .map_err(EngineError::Template)?;
    // Templates that write BOS themselves (Llama 3) must not get a second one.
    let add_bos = bos.is_empty() || !text.starts_with(&bos);
    tok.encode(&text, add_bos).map_err(EngineError::Tokenizer)
}
