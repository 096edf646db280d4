//! `docs/writing-a-codec.md` quotes the codec verbatim; this test keeps the two in step.

/// The lines between the `// codec: begin` and `// codec: end` markers, inclusive.
fn codec_region(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let begin = lines.iter().position(|l| l.trim() == "// codec: begin");
    let end = lines.iter().position(|l| l.trim() == "// codec: end");
    match (begin, end) {
        (Some(b), Some(e)) if b < e => lines[b..=e].to_vec(),
        _ => panic!("codec markers missing"),
    }
}

/// The lines of every ```rust block of the guide, in order.
fn rust_blocks(md: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in md.lines() {
        match (inside, line.trim_end()) {
            (false, "```rust") => inside = true,
            (true, "```") => inside = false,
            (true, l) => {
                out.push_str(l);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn guide_quotes_the_codec() {
    let source = include_str!("../src/lib.rs");
    let guide = include_str!("../../../docs/writing-a-codec.md");
    let quoted = rust_blocks(guide);
    let quoted: Vec<&str> = codec_region(&quoted)
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let code: Vec<&str> = codec_region(source)
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        quoted, code,
        "docs/writing-a-codec.md no longer quotes codecs/minirpc/src/lib.rs exactly"
    );
}

#[test]
fn the_codec_is_about_sixty_lines() {
    let source = include_str!("../src/lib.rs");
    let code = codec_region(source)
        .into_iter()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count();
    // Attributes and braces included, doc comments and blank lines not.
    assert!(code <= 65, "the example codec grew to {code} lines of code");
}
