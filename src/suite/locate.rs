//! Finding a key or value in a suite file's text (for line numbers), and the closest
//! valid word (for "did you mean").

/// The candidate closest to `word`, if reasonably close.
pub fn closest(word: &str, candidates: &[&str]) -> Option<String> {
    let lw = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(&lw, &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_owned())
}

/// Where `key: value` first appears in `text` (1-based line and column of the value).
pub fn locate(text: &str, key: &str, value: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let k = line.find(&format!("{key}:"))?;
        let after = &line[k + key.len() + 1..];
        let trimmed = after.trim_start().trim_matches(|c| c == '"' || c == '\'');
        if value.is_empty() || trimmed.starts_with(value) {
            let col = k + key.len() + 1 + (after.len() - after.trim_start().len()) + 1;
            Some((i + 1, col))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_key() {
        assert_eq!(
            closest("exitcode", &["action", "exitCode", "delay"]),
            Some("exitCode".into())
        );
        assert_eq!(closest("stpes", &["name", "steps"]), Some("steps".into()));
        assert_eq!(closest("zzzzzzzz", &["name", "steps"]), None);
    }

    #[test]
    fn locates_values() {
        let text = "name: x\nsteps:\n  - create: {backup: lb9}\n  - delete:\n      backup: lb2\n";
        assert_eq!(locate(text, "backup", "lb2"), Some((5, 15)));
        assert_eq!(locate(text, "name", ""), Some((1, 7)));
    }
}
