//! Replays the committed corpora of the proto fuzz targets (`fuzz/corpus/<target>/`: the
//! seeds, the regressions and the minimised corpus a run grew) through each target's own
//! checks, shared with the target by `#[path]`, so every corpus file, and every future
//! finding committed there, is a regression test of the workspace (the fuzz crate is
//! outside it). `streams` has its own file, `streams_corpus.rs`.

#[path = "../../fuzz/fuzz_targets/bytes_common.rs"]
mod bytes_common;
#[path = "../../fuzz/fuzz_targets/connection_common.rs"]
mod connection_common;

use arbitrary::{Arbitrary, Unstructured};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Every file of `fuzz/corpus/<target>`, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
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

/// Runs `check` on every input of `target`'s corpus (at least `min` files) and fails with
/// the names of the inputs whose check panicked.
fn replay(target: &str, min: usize, check: impl Fn(&[u8])) {
    let inputs = corpus(target);
    assert!(
        inputs.len() >= min,
        "{target}: {} files, the corpus is missing",
        inputs.len()
    );
    let failed: Vec<_> = inputs
        .iter()
        .filter(|(_, data)| catch_unwind(AssertUnwindSafe(|| check(data))).is_err())
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {failed:?} break the target's checks"
    );
}

/// The typed input libfuzzer-sys hands a `fuzz_target!(|input: T| …)` for `data` (too short
/// for the type's size hint or not decodable: the target skips it). Same `arbitrary`
/// version as fuzz/Cargo.lock, so a corpus file means the same operations in both.
fn typed<T: for<'a> Arbitrary<'a>>(data: &[u8]) -> Option<T> {
    if data.len() < T::size_hint(0).0 {
        return None;
    }
    T::arbitrary_take_rest(Unstructured::new(data)).ok()
}

#[test]
fn frame_decode_corpus() {
    replay("frame_decode", 91, bytes_common::frame_decode);
}

#[test]
fn http_head_corpus() {
    replay("http_head", 33, bytes_common::http_head);
}

#[test]
fn demo_message_corpus() {
    replay("demo_message", 5, bytes_common::demo_message);
}

#[test]
fn connection_server_corpus() {
    replay("connection_server", 12, |data| {
        if let Some(input) = typed::<connection_common::ServerInput>(data) {
            connection_common::server(input);
        }
    });
}

#[test]
fn connection_client_corpus() {
    replay("connection_client", 12, |data| {
        if let Some(input) = typed::<connection_common::ClientInput>(data) {
            connection_common::client(input);
        }
    });
}
