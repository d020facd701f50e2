//! The `syncbus` command: check topics against patterns and inspect envelopes.
//!
//! ```text
//! syncbus match <pattern> <topic>...     which topics the pattern matches
//! syncbus decode [--binary] [FILE]       validate an envelope (CloudEvents JSON or binary)
//!                                        and print it as CloudEvents JSON
//! syncbus --version
//! ```

use std::io::{Read, Write};
use std::process::ExitCode;

use syncbus::{Binary, CloudEventsJson, Limits, Pattern, Topic};

const USAGE: &str = "usage:
  syncbus match <pattern> <topic>...
  syncbus decode [--binary] [FILE]   (reads stdin without FILE)
  syncbus --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("syncbus: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    match args.first().map(String::as_str) {
        Some("match") => match_topics(&args[1..]),
        Some("decode") => decode(&args[1..]),
        Some("--version" | "-V") => {
            println!("syncbus {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(format!("unknown or missing command\n{USAGE}")),
    }
}

/// Prints `match` or `no match` per topic; exits 1 if any topic did not match.
fn match_topics(args: &[String]) -> Result<ExitCode, String> {
    let (pattern, topics) = args
        .split_first()
        .ok_or_else(|| format!("match needs a pattern and topics\n{USAGE}"))?;
    if topics.is_empty() {
        return Err(format!("match needs at least one topic\n{USAGE}"));
    }
    let pattern = Pattern::new(pattern).map_err(|e| format!("invalid pattern: {e}"))?;
    let mut all = true;
    for t in topics {
        let topic = Topic::new(t).map_err(|e| format!("invalid topic: {e}"))?;
        let hit = pattern.matches(&topic);
        all &= hit;
        println!("{}\t{topic}", if hit { "match" } else { "no match" });
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn decode(args: &[String]) -> Result<ExitCode, String> {
    let binary = args.iter().any(|a| a == "--binary");
    let files: Vec<&String> = args.iter().filter(|a| *a != "--binary").collect();
    let mut input = Vec::new();
    match files.as_slice() {
        [] => std::io::stdin()
            .read_to_end(&mut input)
            .map_err(|e| format!("reading stdin: {e}"))?,
        [path] => {
            input = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
            input.len()
        }
        _ => return Err(format!("decode takes at most one file\n{USAGE}")),
    };
    let limits = Limits::default();
    let envelope = if binary {
        Binary::decode(&input, &limits)
    } else {
        CloudEventsJson::decode(&input, &limits)
    }
    .map_err(|e| format!("invalid envelope: {e}"))?;
    let json = CloudEventsJson::encode(&envelope).map_err(|e| format!("re-encoding: {e}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&json)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| format!("writing: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
