//! README's quick start is the doc test of pt-hyp's crate documentation, character for
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
    let readme = std::fs::read_to_string(format!("{dir}/README.md")).unwrap();
    let docs = std::fs::read_to_string(format!("{dir}/src/lib.md")).unwrap();
    let quick_start = rust_blocks(&readme);
    assert_eq!(quick_start.len(), 1, "one Rust block in README");
    assert_eq!(quick_start[0], rust_blocks(&docs)[0]);
}
