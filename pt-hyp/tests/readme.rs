//! The READMEs' quick start (the crate's and the repository's) is the doc test of pt-hyp's crate documentation, character for
//! character (both are compiled and run as doc tests; this keeps them the same text).

fn rust_blocks(text: &str) -> Vec<&str> {
    text.split("```rust\n")
        .skip(1)
        .filter_map(|rest| rest.split("```\n").next())
        .collect()
}

#[test]
fn readme_quick_start_is_the_crate_doc_example() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let docs = std::fs::read_to_string(format!("{dir}/src/lib.md")).unwrap();
    // The crate's own README (crates.io) and the repository's README.
    for path in [format!("{dir}/README.md"), format!("{dir}/../README.md")] {
        let readme = std::fs::read_to_string(&path).unwrap();
        let quick_start = rust_blocks(&readme);
        assert_eq!(quick_start.len(), 1, "one Rust block in {path}");
        assert_eq!(quick_start[0], rust_blocks(&docs)[0], "{path}");
    }
}
