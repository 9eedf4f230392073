//! The `personas` command: parse, run, print the error and its hints once.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match personas::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match personas::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprint!("{}", personas::error::render(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}
