//! The `syncbus` command: check topics against patterns and inspect envelopes.
//!
//! ```text
//! syncbus match <pattern> <topic>...     which topics the pattern matches
//! syncbus decode [--binary] [FILE]       validate an envelope (CloudEvents JSON or binary)
//!                                        and print it as CloudEvents JSON
//! syncbus dead-letters list DB [--topic P] [--type T] [--subscription S] [--error TEXT] [--limit N]
//! syncbus dead-letters show DB ID        one record, its event as CloudEvents JSON
//! syncbus dead-letters delete DB ID
//! syncbus --version
//! ```

use std::io::{Read, Write};
use std::process::ExitCode;

use syncbus::store::SqliteStore;
use syncbus::store::{DeadLetterFilter, DeadLetterId, DeadLetterRecord, DeadLetterStore};
use syncbus::{Binary, CloudEventsJson, Limits, Pattern, Topic};

const USAGE: &str = "usage:
  syncbus match <pattern> <topic>...
  syncbus decode [--binary] [FILE]   (reads stdin without FILE)
  syncbus dead-letters list DB [--topic PATTERN] [--type TYPE] [--subscription NAME] [--error TEXT] [--limit N]
  syncbus dead-letters show DB ID
  syncbus dead-letters delete DB ID
  syncbus --version

DB is a syncbus SQLite store file.";

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
        Some("dead-letters") => dead_letters(&args[1..]),
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

/// `dead-letters list|show|delete DB ...` on an SQLite store file.
fn dead_letters(args: &[String]) -> Result<ExitCode, String> {
    let (cmd, rest) = args
        .split_first()
        .ok_or_else(|| format!("dead-letters needs a command\n{USAGE}"))?;
    let (db, rest) = rest
        .split_first()
        .ok_or_else(|| format!("dead-letters {cmd} needs a store file\n{USAGE}"))?;
    // Opening creates a store; an inspection tool must not create one by mistake.
    if !std::path::Path::new(db).is_file() {
        return Err(format!("{db}: no such store file"));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let store = SqliteStore::open(db).await.map_err(|e| {
            // Name the file once: most open errors name it already.
            let m = e.to_string();
            if m.contains(db) {
                m
            } else {
                format!("{db}: {m}")
            }
        })?;
        let dl = store.dead_letters();
        match cmd.as_str() {
            "list" => {
                let filter = filter_from(rest)?;
                let records = dl.list(&filter).await.map_err(|e| e.to_string())?;
                for r in &records {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\tattempts={}\t{}",
                        r.id,
                        r.last_failure,
                        r.subscription,
                        r.envelope.meta().event_type(),
                        r.envelope.meta().topic().map_or("-", |t| t.as_str()),
                        r.attempts,
                        r.error()
                    );
                }
                eprintln!("{} dead letters", records.len());
                Ok(ExitCode::SUCCESS)
            }
            "show" => {
                let id = one_id(rest)?;
                let r = dl.get(&id).await.map_err(|e| e.to_string())?;
                show(&r)?;
                Ok(ExitCode::SUCCESS)
            }
            "delete" => {
                let id = one_id(rest)?;
                dl.delete(&id).await.map_err(|e| e.to_string())?;
                println!("deleted {id}");
                Ok(ExitCode::SUCCESS)
            }
            other => Err(format!("unknown dead-letters command {other:?}\n{USAGE}")),
        }
    })
}

fn one_id(args: &[String]) -> Result<DeadLetterId, String> {
    match args {
        [id] => DeadLetterId::parse(id).map_err(|e| e.to_string()),
        _ => Err(format!("expected one dead-letter id\n{USAGE}")),
    }
}

fn filter_from(args: &[String]) -> Result<DeadLetterFilter, String> {
    let mut f = DeadLetterFilter::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        f = match flag.as_str() {
            "--topic" => f.topic(Pattern::new(value).map_err(|e| format!("invalid pattern: {e}"))?),
            "--type" => f.event_type(value.clone()),
            "--subscription" => f.subscription(value.clone()),
            "--error" => f.error_contains(value.clone()),
            "--limit" => f.limit(
                value
                    .parse()
                    .map_err(|_| format!("--limit needs a number, not {value:?}"))?,
            ),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        };
    }
    Ok(f)
}

fn show(r: &DeadLetterRecord) -> Result<(), String> {
    println!("id:           {}", r.id);
    println!("subscription: {}", r.subscription);
    println!("handler:      {}", r.handler);
    println!("error kind:   {}", r.error_kind);
    for (i, e) in r.error_chain.iter().enumerate() {
        println!(
            "{}{e}",
            if i == 0 {
                "error:        "
            } else {
                "  caused by:  "
            }
        );
    }
    println!("attempts:     {}", r.attempts);
    println!("first failed: {}", r.first_failure);
    println!("last failed:  {}", r.last_failure);
    let json =
        CloudEventsJson::encode(&r.envelope).map_err(|e| format!("encoding the event: {e}"))?;
    println!("event:        {}", String::from_utf8_lossy(&json));
    Ok(())
}
