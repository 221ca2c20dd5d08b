//! Runnable examples of errand: see the `[[example]]` entries of this package.

/// The README's usage example is `examples/readme.rs`: every line the README shows is there,
/// in the same order, so the README cannot drift from code that compiles and runs.
#[cfg(test)]
mod readme {
    #[test]
    fn the_readme_example_is_the_readme_program() {
        let readme = include_str!("../README.md");
        let program = include_str!("readme.rs");
        let block = readme
            .split_once("## Usage")
            .and_then(|(_, rest)| rest.split_once("```rust\n"))
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(code, _)| code)
            .expect("the README has a Usage section with a rust block");
        let mut rest = program;
        for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match rest.find(line) {
                Some(at) => rest = &rest[at + line.len()..],
                None => panic!("README line not in examples/readme.rs (in order): {line}"),
            }
        }
    }
}
