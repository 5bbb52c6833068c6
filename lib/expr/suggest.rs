//! Did-you-mean, for both dialects of the language: `trail-filter` suggests fields of the event
//! model, `trail-capture -m` members of the kernel's structs (from BTF). One ranking, so a typo
//! gets the same suggestions whichever tool reports it.

/// Levenshtein distance, for "did you mean" suggestions.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// Names among `candidates` close to `name` (a typo away, or sharing a prefix), best first.
pub fn close_matches<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(usize, &str)> = candidates
        .filter_map(|c| {
            let d = distance(name, c);
            let related = d <= 2.max(name.len() / 3) || c.starts_with(name) || name.starts_with(c);
            related.then_some((d, c))
        })
        .collect();
    scored.sort();
    scored.into_iter().map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        let fields = ["reason", "code", "subsystem"];
        assert_eq!(
            close_matches("resaon", fields.iter().copied()),
            vec!["reason"]
        );
        assert_eq!(
            close_matches("sub", fields.iter().copied()),
            vec!["subsystem"]
        );
        assert!(close_matches("zzzzzz", fields.iter().copied()).is_empty());
    }
}
