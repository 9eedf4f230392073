//! `personas chat`: the workshop's Demo 1, a conversation with one persona in the terminal.

use std::io::{BufRead, Write};

use anyhow::Context as _;
use clap::Args;

use super::{
    print_streamed, text_or_file, Context, ModelArgs, SamplingArgs, VIRTUAL_PERSON_SIMULATOR,
};
use crate::chat::Message;
use crate::engine::session::ChatSession;
use crate::engine::SamplingParams;
use crate::model::Model;

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// System prompt, as text or @FILE. Default: the workshop's virtual person simulator.
    #[arg(long, value_name = "TEXT|@FILE")]
    pub system: Option<String>,
    /// Persona description, as text or @FILE, sent as the first user turn (e.g. "Please create
    /// a synthetic persona called \"Jim\" who is ...").
    #[arg(long, value_name = "TEXT|@FILE")]
    pub persona: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

const HELP: &str = "commands: /reset (forget the conversation), /system (show the system prompt), \
/system TEXT (change it and reset), /save FILE (write the transcript as JSON), /help, /quit";

pub fn run(ctx: &Context, args: ChatArgs) -> anyhow::Result<()> {
    let system = match &args.system {
        Some(s) => text_or_file(s)?,
        None => VIRTUAL_PERSON_SIMULATOR.to_string(),
    };
    let persona = args.persona.as_deref().map(text_or_file).transpose()?;
    let mut model = ctx.load_model(&args.model)?;
    // One sequence at a time: no batch to be invariant to, and decoding is faster unpadded.
    model.llama.set_batch_invariant(false);
    let params = args.sampling.params();
    let mut session = ChatSession::new(&model, Some(system))?;
    eprintln!("personas chat: {HELP}");
    if let Some(p) = &persona {
        println!("> {p}");
        turn(&model, &mut session, p, &params)?;
    }
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            return Ok(());
        }
        let input = line.trim();
        if input.is_empty() {
            continue;
        }
        match command(input) {
            Some(("/quit" | "/exit", _)) => return Ok(()),
            Some(("/help", _)) => println!("{HELP}"),
            Some(("/reset", _)) => {
                session.reset();
                if let Some(p) = &persona {
                    println!("(conversation reset; persona sent again)\n> {p}");
                    turn(&model, &mut session, p, &params)?;
                } else {
                    println!("(conversation reset)");
                }
            }
            Some(("/system", "")) => {
                println!("{}", session.system.as_deref().unwrap_or("(none)"));
            }
            // A bad file name is the user's typo, not the end of the conversation.
            Some(("/system", text)) => match text_or_file(text) {
                Ok(system) => {
                    session.system = Some(system);
                    session.reset();
                    println!("(system prompt changed; conversation reset)");
                }
                Err(e) => println!("(system prompt unchanged: {e:#})"),
            },
            Some(("/save", "")) => println!("usage: /save FILE"),
            Some(("/save", path)) => match save(&session.transcript(), path) {
                Ok(()) => println!("(saved to {path})"),
                Err(e) => println!("(not saved: {e:#})"),
            },
            Some((other, _)) => println!("unknown command `{other}`; {HELP}"),
            None => turn(&model, &mut session, input, &params)?,
        }
    }
}

/// `/name rest` -> ("/name", "rest").
fn command(input: &str) -> Option<(&str, &str)> {
    if !input.starts_with('/') {
        return None;
    }
    let (name, rest) = input.split_once(char::is_whitespace).unwrap_or((input, ""));
    Some((name, rest.trim()))
}

fn turn(
    model: &Model,
    session: &mut ChatSession,
    user: &str,
    params: &SamplingParams,
) -> anyhow::Result<()> {
    print_streamed(model, |on_token| session.send(user, params, on_token))?;
    Ok(())
}

fn save(messages: &[Message], path: &str) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(messages)?;
    std::fs::write(path, json + "\n").with_context(|| format!("cannot write `{path}`"))
}
