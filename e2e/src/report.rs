//! Writing what a benchmark or conformance run measured into the Markdown file that records it.

use std::path::Path;

/// Today's date (UTC, `YYYY-MM-DD`), for the heading of a recorded run.
pub fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Replaces the text between `<!-- {marker}:start -->` and `<!-- {marker}:end -->` in the file with `body`,
/// keeping everything else; a file without the markers gets `heading` and the marked body appended.
pub fn replace_marked(path: &Path, marker: &str, heading: &str, body: &str) -> std::io::Result<()> {
    let (start_mark, end_mark) = (
        format!("<!-- {marker}:start -->"),
        format!("<!-- {marker}:end -->"),
    );
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{start_mark}\n{body}{end_mark}");
    let out = match (text.find(&start_mark), text.find(&end_mark)) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{block}{}", &text[..start], &text[end + end_mark.len()..])
        }
        _ if text.trim().is_empty() => format!("{heading}\n\n{block}\n"),
        _ => format!("{}\n\n{heading}\n\n{block}\n", text.trim_end()),
    };
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_marked_part_is_replaced_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("RESULTS.md");
        replace_marked(&path, "run", "# Results", "first\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# Results\n\n<!-- run:start -->\nfirst\n<!-- run:end -->\n"
        );
        let edited = std::fs::read_to_string(&path).unwrap() + "\nWritten by people.\n";
        std::fs::write(&path, edited).unwrap();
        replace_marked(&path, "run", "# Results", "second\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("<!-- run:start -->\nsecond\n<!-- run:end -->"),
            "{text}"
        );
        assert!(
            !text.contains("first") && text.ends_with("Written by people.\n"),
            "{text}"
        );
        replace_marked(&path, "other", "## Other", "x\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("Written by people.\n\n## Other\n\n<!-- other:start -->\nx\n<!-- other:end -->\n"),
            "{text}"
        );
    }
}
