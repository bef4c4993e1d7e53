//! `spahgc cache stats|verify|clear`.

use clap::Subcommand;

use crate::embed::CacheArgs;
use crate::output::Output;

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Entries, sizes and the size bound of the embedding cache.
    Stats(CacheArgs),
    /// Read every entry in full, check it, and delete those that fail (they are recomputed when
    /// next needed).
    Verify(CacheArgs),
    /// Remove every entry.
    Clear(CacheArgs),
}

pub fn run(cmd: CacheCommand, out: &Output) -> anyhow::Result<()> {
    match cmd {
        CacheCommand::Stats(args) => {
            let cache = opened(&args, "inspect")?;
            let stats = cache.stats()?;
            let mut human = format!(
                "cache {}: {} entries, {:.1} MiB of {:.1} MiB",
                stats.root.display(),
                stats.entries,
                stats.total_bytes as f64 / 1048576.0,
                stats.max_bytes as f64 / 1048576.0
            );
            let mut entries = Vec::new();
            for e in &stats.per_entry {
                let shape =
                    e.shape.map_or("unreadable header".into(), |s| format!("{} × {} {:?}", s.rows, s.dim, s.precision));
                human.push_str(&format!("\n  {}  {shape}  {} bytes", e.file_name, e.bytes));
                entries.push(serde_json::json!({"name": e.file_name, "shape": shape, "bytes": e.bytes}));
            }
            out.report(
                &human,
                serde_json::json!({"root": stats.root, "entries": entries, "total_bytes": stats.total_bytes, "max_bytes": stats.max_bytes}),
            )?;
        }
        CacheCommand::Verify(args) => {
            let cache = opened(&args, "verify")?;
            let verified = cache.verify()?;
            let mut human = format!("{} entries verified, {} removed", verified.valid, verified.removed.len());
            for removed in &verified.removed {
                human.push_str(&format!("\n  removed {removed}"));
            }
            out.report(&human, serde_json::json!({ "valid": verified.valid, "removed": verified.removed }))?;
        }
        CacheCommand::Clear(args) => {
            let cache = opened(&args, "clear")?;
            let removed = cache.clear()?;
            out.report(&format!("removed {removed} entries"), serde_json::json!({ "removed": removed }))?;
        }
    }
    Ok(())
}

/// The cache the arguments name; `what` the command wants to do with it, for the error.
fn opened(args: &CacheArgs, what: &str) -> anyhow::Result<spahgc_cache::EmbeddingCache> {
    args.open()?.ok_or_else(|| anyhow::anyhow!("--no-cache leaves no cache to {what}"))
}
