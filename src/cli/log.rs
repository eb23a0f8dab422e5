//! `must-ds log`: the commit history.

use std::io::Write;

use must_ds::format::{Action, Commit};
use must_ds::redact::printable;
use must_ds::store::Dataset;

use super::inspect::mib;

#[derive(clap::Args, Debug)]
pub(crate) struct LogArgs {
    /// Dataset root.
    root: String,
    /// Print JSON lines (one commit per line).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(
    a: LogArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let ds = rt.block_on(Dataset::open(&a.root))?;
    print_log(&rt.block_on(ds.history())?, a.json, out)
}

/// The first line of a commit, for `must-ds log`: version, time, operation
/// and writer, with control characters escaped (they come from the log).
pub fn describe_commit(c: &Commit) -> String {
    printable(&format!(
        "version {}  {}  {}  ({})",
        c.version, c.timestamp, c.operation, c.writer
    ))
}

/// What `must-ds log` prints: one JSON object per commit (serde escapes
/// every control character), or per commit a line ([`describe_commit`])
/// and a line per action ([`describe_action`]).
fn print_log(commits: &[Commit], json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    for c in commits {
        if json {
            writeln!(out, "{}", serde_json::to_string(c)?)?;
        } else {
            writeln!(out, "{}", describe_commit(c))?;
            for a in &c.actions {
                writeln!(out, "    {}", describe_action(a))?;
            }
        }
    }
    Ok(())
}

/// One line describing an action, for `must-ds log`, with control
/// characters escaped (names and paths come from the log).
pub fn describe_action(a: &Action) -> String {
    printable(&describe_action_raw(a))
}

fn describe_action_raw(a: &Action) -> String {
    match a {
        Action::Protocol(p) => format!(
            "protocol: reader {} writer {} features {:?}",
            p.reader_version, p.writer_version, p.features
        ),
        Action::Dataset(d) => format!("dataset: {:?}", d.name),
        Action::Task(t) => format!("task {:?} ({})", t.name, t.kind.name()),
        Action::AddImages(x) => format!(
            "add_images shard {}: {} rows, {}, {}",
            x.shard,
            x.rows,
            mib(x.bytes),
            x.path
        ),
        Action::AddLabels(x) => format!(
            "add_labels {:?} shard {}: {}/{} rows labeled, {}{}",
            x.task,
            x.shard,
            x.labeled,
            x.rows,
            x.path,
            if x.replace { " (replace)" } else { "" }
        ),
        Action::Remove(r) => format!("remove {}", r.path),
    }
}
