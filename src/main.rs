//! The `personas` command: parse, run, print the error chain once.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match personas::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match personas::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let mut msg = format!("error: {err}");
            for cause in err.chain().skip(1) {
                let cause = cause.to_string();
                if !msg.contains(&cause) {
                    msg.push_str(&format!(": {cause}"));
                }
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
