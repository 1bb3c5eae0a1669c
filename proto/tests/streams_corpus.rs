//! Replays the committed corpus of the `streams` fuzz target (`fuzz/corpus/streams/`: the
//! seeds, the findings `regression-*` and the minimised corpus a run grew) through the
//! target's own interpretation, so each input stays a regression test of the workspace
//! (the fuzz crate is outside it). The other proto targets: `fuzz_corpus.rs`.

#[path = "../../fuzz/fuzz_targets/streams_common.rs"]
mod streams_common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/streams");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("corpus file"))
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn every_streams_corpus_input_keeps_the_invariants() {
    let inputs = corpus();
    assert!(inputs.len() >= 9, "the corpus is missing");
    let failed: Vec<_> = inputs
        .iter()
        .filter(|(_, data)| catch_unwind(AssertUnwindSafe(|| streams_common::run(data))).is_err())
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "{failed:?} break the target's invariants"
    );
}

/// spec/protocol.md §10.8: two correct peers whose requester lets 64 concurrent streams
/// time out, again and again, are not closed with 4007 (found by the fuzzer after about
/// 800 k runs; it closed the connection while every reset counted as churn).
#[test]
fn cancellation_at_the_concurrency_limit_is_not_churn() {
    let data = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus/streams/regression-4007-between-correct-peers"),
    )
    .expect("the finding is in the corpus");
    streams_common::run(&data);
}
