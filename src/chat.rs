//! Chat templates: turning a conversation into the prompt text a model was trained on.
//!
//! Models ship a Jinja template (`tokenizer_config.json`'s `chat_template`, GGUF
//! `tokenizer.chat_template`) written for Python's jinja2 as Hugging Face transformers sets it
//! up. [`ChatTemplate`] renders it with minijinja configured the same way, so the prompt matches
//! what `apply_chat_template` would produce:
//!
//! * `trim_blocks` and `lstrip_blocks` on, the template's trailing newline dropped;
//! * the globals transformers adds: `raise_exception(msg)` and `strftime_now(format)`;
//! * jinja2 features templates rely on: `tojson`, `break`/`continue`, and Python methods on
//!   strings, dicts and lists (`.strip()`, `.split()`, `.startswith()`, `.items()`, ...);
//! * the variables transformers passes: `messages`, `add_generation_prompt`, `bos_token`,
//!   `eos_token` and `tools = none`.
//!
//! Like transformers, no `date_string` is passed unless a date is pinned with
//! [`ChatTemplate::with_date`]; templates then fall back on their own default or on
//! `strftime_now`, which also honours the pinned date (for reproducible prompts and tests).

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{Local, NaiveDate, NaiveDateTime};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{context, Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};

/// Errors from compiling or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The template does not parse.
    #[error("invalid chat template: {0}")]
    Syntax(#[source] minijinja::Error),
    /// The template called `raise_exception`, e.g. because roles do not alternate.
    #[error("the chat template rejected the conversation: {0}")]
    Raised(String),
    /// Rendering failed for another reason (unknown filter, type error, ...).
    #[error("rendering the chat template failed: {0}")]
    Render(#[source] minijinja::Error),
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `"system"`, `"user"` or `"assistant"`.
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl Message {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }

    /// The message as a template value: a dict with `role` then `content`.
    fn to_value(&self) -> Value {
        Value::from_object(MessageObject(self.clone()))
    }
}

/// A [`Message`] seen by templates as the dict `{"role": ..., "content": ...}`, keys in that
/// order (as transformers passes them) for `tojson` and `.items()`.
#[derive(Debug)]
struct MessageObject(Message);

impl Object for MessageObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "role" => Some(Value::from(self.0.role.as_str())),
            "content" => Some(Value::from(self.0.content.as_str())),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["role", "content"])
    }
}

/// ChatML, used for models that ship no template (it is what SmolLM, Qwen and many
/// fine-tunes use).
pub const CHATML_TEMPLATE: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

const TEMPLATE_NAME: &str = "chat";
/// Prefix marking errors raised by the template itself, to tell them from other failures.
const RAISED: &str = "raise_exception: ";

/// A compiled chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Pinned "today" for `strftime_now` and `date_string`.
    date: Option<NaiveDate>,
}

impl ChatTemplate {
    /// Compiles a Jinja chat template.
    pub fn new(source: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        // transformers: jinja2 with trim_blocks=True, lstrip_blocks=True (keep_trailing_newline
        // stays False). The syntax must be set before the template is parsed.
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .map_err(ChatError::Syntax)?;
        env.set_syntax(syntax);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{RAISED}{msg}"),
                ))
            },
        );
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(ChatError::Syntax)?;
        let mut template = Self { env, date: None };
        template.install_strftime_now();
        Ok(template)
    }

    /// The built-in ChatML template.
    pub fn chatml() -> Self {
        Self::new(CHATML_TEMPLATE).expect("the built-in ChatML template compiles")
    }

    /// The model's own template when it has one, ChatML otherwise.
    pub fn for_model(source: Option<&str>) -> Result<Self, ChatError> {
        source.map_or_else(|| Ok(Self::chatml()), Self::new)
    }

    /// Pins "today": `strftime_now` formats this date (at midnight) and `date_string` is passed
    /// as `"%d %b %Y"` (e.g. `26 Jul 2024`), so prompts do not change from day to day.
    pub fn with_date(mut self, date: NaiveDate) -> Self {
        self.date = Some(date);
        self.install_strftime_now();
        self
    }

    /// The pinned date, if any.
    pub fn date(&self) -> Option<NaiveDate> {
        self.date
    }

    fn install_strftime_now(&mut self) {
        let pinned: Option<NaiveDateTime> = self.date.and_then(|d| d.and_hms_opt(0, 0, 0));
        self.env.add_function(
            "strftime_now",
            move |format: String| -> Result<String, minijinja::Error> {
                let now = pinned.unwrap_or_else(|| Local::now().naive_local());
                let mut out = String::new();
                // `write!` reports a bad format as an error, where `to_string` would panic.
                write!(out, "{}", now.format(&format)).map_err(|_| {
                    minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        format!("strftime_now: bad format {format:?}"),
                    )
                })?;
                Ok(out)
            },
        );
    }

    /// Renders a conversation. `add_generation_prompt` appends the header that opens the
    /// assistant's reply; `bos_token` / `eos_token` are the model's texts for them (templates
    /// such as Llama 3's write the BOS themselves, so do not add it again when encoding).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String, ChatError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(ChatError::Render)?;
        let messages: Vec<Value> = messages.iter().map(Message::to_value).collect();
        let ctx = context! {
            messages,
            add_generation_prompt,
            bos_token,
            eos_token,
            tools => Value::from(()),
        };
        // Without a pinned date, `date_string` stays undefined, as in transformers.
        let ctx = match self.date {
            Some(date) => context! { date_string => date.format("%d %b %Y").to_string(), ..ctx },
            None => ctx,
        };
        template
            .render(ctx)
            .map_err(|err| match raised_message(&err) {
                Some(msg) => ChatError::Raised(msg),
                None => ChatError::Render(err),
            })
    }
}

/// The message of a `raise_exception` call, found on the error or any error it wraps.
fn raised_message(err: &minijinja::Error) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(jinja) = e.downcast_ref::<minijinja::Error>() {
            if let Some(msg) = jinja.detail().and_then(|d| d.strip_prefix(RAISED)) {
                return Some(msg.to_owned());
            }
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn test_gguf() -> PathBuf {
        match std::env::var_os("PERSONAS_TEST_GGUF") {
            Some(path) => PathBuf::from(path),
            None => panic!(
                "PERSONAS_TEST_GGUF is not set: run scripts/test, which fetches the test model"
            ),
        }
    }

    fn smollm_tokenizer() -> crate::tokenizer::Tokenizer {
        let path = test_gguf();
        let mut file =
            std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let content =
            candle_core::quantized::gguf_file::Content::read(&mut file).expect("GGUF header");
        crate::tokenizer::Tokenizer::from_gguf(&content).expect("tokenizer")
    }

    fn render(source: &str, messages: &[Message]) -> String {
        ChatTemplate::new(source)
            .unwrap()
            .render(messages, false, "<s>", "</s>")
            .unwrap()
    }

    #[test]
    fn smollm2_template_reproduces_the_reference_prompts() {
        let tok = smollm_tokenizer();
        let template =
            ChatTemplate::new(&tok.chat_template().expect("SmolLM2 ships a template")).unwrap();
        let (bos, eos) = (tok.bos_token().unwrap().1, tok.eos_token().unwrap().1);
        let rendered = template
            .render(
                &[
                    Message::system("You are a 35-year-old female person."),
                    Message::user(
                        "I am concerned that the information I submit on the Internet could be misused.\n\
                         Answer with a single number from 1 (Strongly Disagree) to 7 (Strongly Agree).",
                    ),
                ],
                true,
                &bos,
                &eos,
            )
            .unwrap();
        assert_eq!(
            rendered,
            "<|im_start|>system\nYou are a 35-year-old female person.<|im_end|>\n\
             <|im_start|>user\nI am concerned that the information I submit on the Internet could be misused.\n\
             Answer with a single number from 1 (Strongly Disagree) to 7 (Strongly Agree).<|im_end|>\n\
             <|im_start|>assistant\n"
        );

        // Every system + user prompt in the llama.cpp reference, rendered and then tokenized,
        // gives llama.cpp's ids.
        #[derive(serde::Deserialize)]
        struct Case {
            text: String,
            ids: Vec<u32>,
        }
        #[derive(serde::Deserialize)]
        struct Fixture {
            cases: Vec<Case>,
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/llamacpp_tokenize.json"
        );
        let fixture: Fixture =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let conversations = [
            (
                "You are a virtual person simulator that creates individual synthetic personas, one at a time, \
                 that I can specify and then ask them any questions I like. Be brief.",
                "Please create a synthetic persona called \"Jim\" who is a 45-year-old farmer in Iowa.",
            ),
            ("You are a 35-year-old female person.", "I am concerned that the information I submit on the Internet could be misused.\nAnswer with a single number from 1 (Strongly Disagree) to 7 (Strongly Agree)."),
            ("You are Jim, a 45-year-old farmer in Iowa with a high school education.", "What do you worry about most?"),
        ];
        for (system, user) in conversations {
            let prompt = template
                .render(
                    &[Message::system(system), Message::user(user)],
                    true,
                    &bos,
                    &eos,
                )
                .unwrap();
            let case = fixture
                .cases
                .iter()
                .find(|c| c.text == prompt)
                .unwrap_or_else(|| panic!("not in the reference: {prompt:?}"));
            assert_eq!(tok.encode(&prompt, false).unwrap(), case.ids);
        }
    }

    #[test]
    fn llama3_1_package_template_renders_all_turns() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/llama3_1_tokenizer_config.json"
        );
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let template = ChatTemplate::new(config["chat_template"].as_str().unwrap()).unwrap();
        let (bos, eos) = (
            config["bos_token"].as_str().unwrap(),
            config["eos_token"].as_str().unwrap(),
        );
        let messages = [
            Message::system("You are Jim, a farmer in Iowa."),
            // The template trims each message's content.
            Message::user("  How old are you?\n"),
            Message::assistant("I am 45."),
        ];
        let expected = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
                        You are Jim, a farmer in Iowa.<|eot_id|>\
                        <|start_header_id|>user<|end_header_id|>\n\nHow old are you?<|eot_id|>\
                        <|start_header_id|>assistant<|end_header_id|>\n\nI am 45.<|eot_id|>";
        assert_eq!(
            template.render(&messages, false, bos, eos).unwrap(),
            expected
        );
        assert_eq!(
            template.render(&messages[..2], true, bos, eos).unwrap(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are Jim, a farmer in Iowa.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHow old are you?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    /// The date logic of Llama 3.1-style templates: a default date string unless the caller
    /// passes one or `strftime_now` exists.
    const DATED: &str = r#"{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if messages[0].role == 'system' %}{{ messages[0].content | trim }}{% endif %}
{{- "<|eot_id|>" }}"#;

    #[test]
    fn pinned_date_reaches_strftime_now_and_date_string() {
        let date = NaiveDate::from_ymd_opt(2024, 7, 26).unwrap();
        let template = ChatTemplate::new(DATED).unwrap().with_date(date);
        assert_eq!(
            template
                .render(
                    &[Message::system("Be brief.")],
                    false,
                    "<|begin_of_text|>",
                    "<|eot_id|>"
                )
                .unwrap(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
             Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
        );
        let now =
            ChatTemplate::new("{{ strftime_now('%Y-%m-%d %H:%M') }}|{{ date_string is defined }}")
                .unwrap();
        assert_eq!(
            now.clone()
                .with_date(date)
                .render(&[], false, "", "")
                .unwrap(),
            "2024-07-26 00:00|True"
        );
        // Unpinned: today's date, and no date_string (as transformers).
        let today = Local::now().format("%Y-%m-%d").to_string();
        assert!(now.render(&[], false, "", "").unwrap().starts_with(&today));
        assert!(now.render(&[], false, "", "").unwrap().ends_with("|False"));
    }

    #[test]
    fn raise_exception_becomes_an_error() {
        let source = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with a user message') }}{% endif %}ok";
        let template = ChatTemplate::new(source).unwrap();
        assert_eq!(
            template
                .render(&[Message::user("hi")], false, "", "")
                .unwrap(),
            "ok"
        );
        match template.render(&[Message::assistant("hi")], false, "", "") {
            Err(ChatError::Raised(msg)) => {
                assert_eq!(msg, "Conversation must start with a user message")
            }
            other => panic!("expected a raised error, got {other:?}"),
        }
        assert!(matches!(
            ChatTemplate::new("{% for %}"),
            Err(ChatError::Syntax(_))
        ));
        assert!(matches!(
            ChatTemplate::new("{{ strftime_now('%Q') }}")
                .unwrap()
                .render(&[], false, "", ""),
            Err(ChatError::Render(_))
        ));
    }

    #[test]
    fn python_methods_json_and_loop_controls() {
        let messages = [
            Message::user("  Hello, World  "),
            Message::assistant("a b c"),
        ];
        let source = "{{ messages[0].content.strip().lower() }}|{{ messages[1]['content'].split() | length }}|\
                      {{ messages[0].content.strip().startswith('Hello') }}|\
                      {% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}|\
                      {{ messages[1] | tojson }}|{{ tools is none }}";
        assert_eq!(
            render(source, &messages),
            r#"hello, world|3|True|user|{"role": "assistant", "content": "a b c"}|True"#
        );
        let items = "{% for k, v in messages[0].items() %}{{ k }}={{ v | trim }};{% endfor %}";
        assert_eq!(render(items, &messages), "role=user;content=Hello, World;");
    }

    #[test]
    fn block_whitespace_follows_transformers() {
        // trim_blocks drops the newline after a block tag, lstrip_blocks the indentation before
        // it, and the template's final newline is dropped.
        let source = "{% for m in messages %}\n    {% if m.role == 'user' %}\nU: {{ m.content }}\n    {% endif %}\n{% endfor %}\n";
        assert_eq!(
            render(source, &[Message::user("hi"), Message::assistant("yo")]),
            "U: hi\n"
        );
    }

    #[test]
    fn chatml_fallback() {
        let template = ChatTemplate::for_model(None).unwrap();
        let messages = [Message::system("Be brief."), Message::user("Hi")];
        assert_eq!(
            template.render(&messages, true, "", "").unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            ChatTemplate::for_model(Some("{{ messages | length }}"))
                .unwrap()
                .render(&messages, true, "", "")
                .unwrap(),
            "2"
        );
    }

    #[test]
    fn messages_serialize_as_role_and_content() {
        let message: Message =
            serde_json::from_str(r#"{"role": "user", "content": "Hi"}"#).unwrap();
        assert_eq!(message, Message::user("Hi"));
        assert_eq!(
            serde_json::to_string(&message).unwrap(),
            r#"{"role":"user","content":"Hi"}"#
        );
    }
}
