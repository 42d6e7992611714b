//! A property test: the manifest validator never panics, whatever bytes it is given.
//!
//! Inputs are generated from real manifests (the examples and the invalid corpus) by mutations
//! that stress a YAML parser: flipped bytes, YAML punctuation, anchors and aliases, tags, deep
//! nesting, truncation and splicing. The count defaults to one million and can be set with
//! `DARI_FUZZ_CASES`; the seed with `DARI_FUZZ_SEED`. A panic prints the input that caused it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use dari_protocol::manifest::{self, MemoryFiles};
use dari_tests::txtar;
use dari_tests::workspace_root;

const DEFAULT_CASES: u64 = 1_000_000;
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ": ",
    "- ",
    ",",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "!!str ",
    "!t ",
    "\"",
    "'",
    "\n",
    "\n  ",
    "\n    - ",
    "? ",
    "|",
    ">-",
    "%YAML 1.2\n",
    "#",
    "---\n",
    "...\n",
    "\t",
    "\0",
    "\u{feff}",
    "\\",
    "~",
    "null",
    "true",
    "1e999",
    "-0",
    "0x1F",
    "99999999999999999999",
    "harness",
    "customRuntimeServer",
    "custom_tools",
    "skills",
    "llm",
    "options",
    "retry_policy",
    "sandbox",
    "env",
    "path: tools/",
    "../",
    "/etc/passwd",
    "tools/repo_search",
    "é",
    "\u{202e}",
];

/// splitmix64: small, fast and good enough to drive mutations reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let root = workspace_root();
    let mut seeds = Vec::new();
    for example in ["echo-runtime", "claude-sdk-runtime", "pi-agent"] {
        seeds.push(std::fs::read(root.join("examples").join(example).join("dari.yml")).expect("read example"));
    }
    for entry in std::fs::read_dir(root.join("tests/manifests/invalid")).expect("read corpus") {
        let archive = txtar::parse(&std::fs::read_to_string(entry.expect("entry").path()).expect("read case"));
        if let Some((_, text)) = archive.files.iter().find(|(path, _)| path == "dari.yml") {
            seeds.push(text.clone().into_bytes());
        }
    }
    seeds
}

/// The pi-agent example's files, so that inputs which get past the YAML reach the bundle checks.
fn bundle() -> MemoryFiles {
    let example = workspace_root().join("examples/pi-agent");
    let mut files = MemoryFiles::new();
    let mut stack = vec![example.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read example dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(&example).expect("inside example").to_string_lossy().into_owned();
                files.insert(relative, std::fs::read(&path).expect("read example file"));
            }
        }
    }
    files
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(8) {
        let at = rng.below(input.len() + 1);
        match rng.below(9) {
            0 => {
                if let Some(byte) = input.get_mut(at) {
                    *byte ^= 1 << rng.below(8);
                }
            }
            1 | 2 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                input.splice(at..at, token.iter().copied());
            }
            3 => {
                let end = (at + rng.below(32)).min(input.len());
                input.drain(at..end);
            }
            4 => input.truncate(at),
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let start = rng.below(other.len());
                let end = (start + rng.below(200)).min(other.len());
                input.splice(at..at, other[start..end].iter().copied());
            }
            6 => {
                let end = (at + rng.below(64)).min(input.len());
                let copy = input[at..end].to_vec();
                input.splice(at..at, copy);
            }
            7 => {
                let depth = rng.below(80);
                let open = if rng.below(2) == 0 { "[" } else { "{a: " };
                input.splice(at..at, open.repeat(depth).into_bytes());
            }
            _ => {
                let byte = rng.next() as u8;
                input.insert(at, byte);
            }
        }
    }
    input
}

#[test]
fn the_validator_never_panics_on_generated_manifests() {
    let cases: u64 =
        std::env::var("DARI_FUZZ_CASES").ok().and_then(|value| value.parse().ok()).unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("DARI_FUZZ_SEED").ok().and_then(|value| value.parse().ok()).unwrap_or(0x0da1);
    let seeds = seeds();
    let files = bundle();
    let threads = std::thread::available_parallelism().map_or(2, usize::from) as u64;
    let started = Instant::now();
    let totals: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let (seeds, files) = (&seeds, &files);
                scope.spawn(move || {
                    let mut rng = Rng(seed ^ (thread + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                    let (mut valid, mut run) = (0, 0);
                    let mut index = thread;
                    while index < cases {
                        let input = mutate(&mut rng, seeds);
                        let outcome = catch_unwind(AssertUnwindSafe(|| manifest::validate(&input, files)));
                        match outcome {
                            Ok(validation) => valid += u64::from(validation.manifest.is_some()),
                            Err(_) => panic!("the validator panicked on input {:?}", String::from_utf8_lossy(&input)),
                        }
                        run += 1;
                        index += threads;
                    }
                    (run, valid)
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().expect("a fuzz thread panicked")).collect()
    });
    let run: u64 = totals.iter().map(|(run, _)| run).sum();
    let valid: u64 = totals.iter().map(|(_, valid)| valid).sum();
    assert_eq!(run, cases);
    eprintln!(
        "manifest fuzz: {run} inputs ({valid} valid) in {:.1?} on {threads} threads, seed {seed}",
        started.elapsed()
    );
}
