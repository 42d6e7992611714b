//! The `grep` tool over a large generated tree, in process, beside the `rg` binary on the same
//! tree.
//!
//! The tree is generated once, deterministically, under `<target>/bench-data/` and reused by
//! later runs. It holds 2,000 text files of 100 KiB (200 MiB) plus a few files that check both
//! searches see the same files: a hidden directory (searched by both), a directory named in
//! `.gitignore` (skipped by both) and a binary file (skipped by both). The pattern matches a few
//! hundred lines, and the limit is far above that, so both read every file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sandboxd::tools::{BashConfig, FileLocks, ToolContext, Workspace, run_tool};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Samples, command};

/// A regex with a literal prefix, the common case for an agent's search.
pub const PATTERN: &str = "needle_[0-9]{4}";
/// High enough that no search stops early.
const LIMIT: u64 = 1_000_000;
/// Bump when the tree's contents change, so that stale cached trees are not reused.
const TREE_NAME: &str = "grep-tree-v1";
const DIRS: usize = 20;
const FILES_PER_DIR: usize = 100;
const FILE_BYTES: usize = 100 * 1024;
/// About one line in this many carries a match.
const LINES_PER_MATCH: u64 = 20_000;

/// The generated tree.
#[derive(Debug)]
pub struct Tree {
    pub root: PathBuf,
    pub files: usize,
    pub bytes: u64,
}

/// Wall times of our grep and of rg, and how many matches each found.
#[derive(Debug)]
pub struct GrepTimes {
    pub ours: Samples,
    pub ours_matches: u64,
    /// `None` when rg is not installed.
    pub rg: Option<RgTimes>,
}

#[derive(Debug)]
pub struct RgTimes {
    /// rg as it runs by default: a parallel walk, results in whatever order threads finish.
    pub default: Samples,
    /// `rg --sort path`: results in path order, as our grep gives them (rg then walks on one
    /// thread).
    pub sorted: Samples,
    pub matches: u64,
}

/// The tree under `<target_dir>/bench-data`, generated on first use.
pub fn tree(target_dir: &Path) -> anyhow::Result<Tree> {
    let data_dir = target_dir.join("bench-data");
    let root = data_dir.join(TREE_NAME);
    let done_marker = data_dir.join(format!("{TREE_NAME}.done"));
    if !done_marker.exists() {
        if root.exists() {
            std::fs::remove_dir_all(&root).with_context(|| format!("remove the partial tree {}", root.display()))?;
        }
        eprintln!("generating the grep tree in {} (once)", root.display());
        generate(&root)?;
        std::fs::write(&done_marker, b"").context("mark the tree complete")?;
    }
    let (files, bytes) = count_files(&root)?;
    Ok(Tree { root, files, bytes })
}

/// Runs our grep and rg `runs` times each, in turns, after one warm-up run of each.
pub async fn measure(tree: &Tree, runs: usize) -> anyhow::Result<GrepTimes> {
    let workspace = Workspace::new(&tree.root).context("open the tree as a workspace")?;
    let context =
        ToolContext { bash: BashConfig::for_workspace(workspace.root()), workspace, locks: FileLocks::default() };
    let rg_installed = command("rg").arg("--version").output().await.is_ok();
    let mut times = GrepTimes { ours: Samples::default(), ours_matches: 0, rg: None };
    let mut rg = RgTimes { default: Samples::default(), sorted: Samples::default(), matches: 0 };
    for run_idx in 0..=runs {
        let recorded = run_idx > 0;
        let (elapsed, matches) = run_ours(&context).await?;
        times.ours_matches = matches;
        if recorded {
            times.ours.push(elapsed);
        }
        if rg_installed {
            let (elapsed, matches) = run_rg(&tree.root, &[]).await?;
            rg.matches = matches;
            let (elapsed_sorted, _) = run_rg(&tree.root, &["--sort", "path"]).await?;
            if recorded {
                rg.default.push(elapsed);
                rg.sorted.push(elapsed_sorted);
            }
        }
    }
    times.rg = rg_installed.then_some(rg);
    Ok(times)
}

async fn run_ours(context: &ToolContext) -> anyhow::Result<(Duration, u64)> {
    let arguments = json!({ "pattern": PATTERN, "limit": LIMIT });
    let started = Instant::now();
    let result = run_tool(context, "grep", arguments, CancellationToken::new(), None).await;
    let elapsed = started.elapsed();
    if result.is_error {
        bail!("the grep tool failed: {:?}", result.content);
    }
    let matches = result.details["matchCount"].as_u64().context("the grep tool reports matchCount")?;
    Ok((elapsed, matches))
}

/// Runs rg with what our grep does: hidden files searched, `.gitignore` honoured outside a git
/// repository too, no user configuration. Counts the matching lines it prints.
async fn run_rg(root: &Path, extra_args: &[&str]) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let output = command("rg")
        .args(["--no-config", "--hidden", "--no-require-git", "--line-number", "--no-heading", "--color", "never"])
        .args(extra_args)
        .args(["--regexp", PATTERN, "."])
        .current_dir(root)
        .output()
        .await
        .context("run rg")?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!("rg exited with {}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    let matches = output.stdout.iter().filter(|&&byte| byte == b'\n').count() as u64;
    Ok((elapsed, matches))
}

/// Writes the tree: the 2,000 searched files, then the files that check the rules.
fn generate(root: &Path) -> anyhow::Result<()> {
    let mut random = SplitMix64(0x005e_ed0f_d1ce);
    for dir_idx in 0..DIRS {
        let dir = root.join(format!("src/module_{dir_idx:02}"));
        for file_idx in 0..FILES_PER_DIR {
            write_text_file(&dir.join(format!("file_{file_idx:03}.txt")), &mut random)?;
        }
    }
    for file_idx in 0..5 {
        write_text_file(&root.join(format!(".hidden/notes_{file_idx}.txt")), &mut random)?;
        write_text_file(&root.join(format!("ignored/build_{file_idx}.txt")), &mut random)?;
    }
    std::fs::write(root.join(".gitignore"), "ignored/\n").context("write .gitignore")?;
    let mut binary = b"\0\x01\x02binary header\n".to_vec();
    binary.extend_from_slice(b"needle_1234 in a binary file\n");
    std::fs::write(root.join("src/blob.bin"), binary).context("write the binary file")?;
    Ok(())
}

/// About `FILE_BYTES` of lines made of code-like words; some lines end with a match.
fn write_text_file(path: &Path, random: &mut SplitMix64) -> anyhow::Result<()> {
    const WORDS: [&str; 32] = [
        "let", "fn", "match", "self", "return", "impl", "struct", "value", "request", "response", "handler", "config",
        "error", "result", "stream", "buffer", "sandbox", "session", "token", "offset", "length", "parse", "render",
        "if", "else", "for", "while", "Some(x)", "None", "Ok(())", "=>", "{",
    ];
    let mut text = String::with_capacity(FILE_BYTES + 256);
    loop {
        let mut line = " ".repeat(4 * (random.next() % 4) as usize);
        for word_idx in 0..(3 + random.next() % 10) {
            if word_idx > 0 {
                line.push(' ');
            }
            line.push_str(WORDS[(random.next() % WORDS.len() as u64) as usize]);
        }
        if random.next().is_multiple_of(LINES_PER_MATCH) {
            line.push_str(&format!(" // needle_{:04}", random.next() % 10_000));
        }
        line.push('\n');
        if text.len() + line.len() > FILE_BYTES {
            break;
        }
        text.push_str(&line);
    }
    std::fs::create_dir_all(path.parent().context("a file has a parent")?).context("create the tree's directories")?;
    let mut file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// The number and total size of regular files under `root`.
fn count_files(root: &Path) -> anyhow::Result<(usize, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("list {}", dir.display()))? {
            let entry = entry.context("read a directory entry")?;
            let metadata = entry.metadata().context("stat a tree entry")?;
            if metadata.is_dir() {
                dirs.push(entry.path());
            } else if metadata.is_file() {
                files += 1;
                bytes += metadata.len();
            }
        }
    }
    Ok((files, bytes))
}

/// A small deterministic generator (splitmix64), so that every run builds the same tree without
/// depending on a crate's stream staying the same across versions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
