//! The README's REST example is the doc test at the top of `src/rest/mod.rs` (which runs):
//! the README cannot run it itself (its Rust blocks are doc tests of `tether-proto`, which
//! has neither tokio nor axum), so this checks that the two say the same.

const README: &str = include_str!("../../README.md");
const REST: &str = include_str!("../src/rest/mod.rs");

/// The visible lines of the first code block of `src/rest/mod.rs`'s module docs.
fn doctest() -> Vec<&'static str> {
    REST.lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l.strip_prefix("//! ")
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .filter(|l| *l != "#" && !l.starts_with("# "))
        .collect()
}

/// The README block that shows the REST round trip, without its leading comment.
fn readme_example() -> Vec<&'static str> {
    let mut blocks = README
        .split("```rust,ignore\n")
        .skip(1)
        .map(|b| &b[..b.find("\n```").expect("block ends")]);
    blocks
        .find(|b| b.contains("Extension<ConnectionInfo>"))
        .expect("README has a rust,ignore block with the REST example")
        .lines()
        .skip_while(|l| l.starts_with("//"))
        .collect()
}

#[test]
fn readme_rest_example_is_the_rest_doctest() {
    let (doc, readme) = (doctest(), readme_example());
    assert!(doc.len() > 10, "doc test not found: {doc:?}");
    assert_eq!(
        readme, doc,
        "README.md's REST example differs from the doc test in runtime-tokio/src/rest/mod.rs; copy the doc test's visible lines into the README"
    );
}
