//! Search normalisation: the same function turns a stored value into its search key and a
//! query `q` into the prefix looked up, so `José García`, `jose garcia` and `JOSE-GARCIA`
//! find each other, and `(415) 555-01` finds `+14155550123`.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The searchable fields, in the order their indexes are queried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SearchField {
    Reference,
    Name,
    Email,
    Phone,
}

impl SearchField {
    pub const ALL: [SearchField; 4] = [
        SearchField::Reference,
        SearchField::Name,
        SearchField::Email,
        SearchField::Phone,
    ];

    /// Normalises a value (stored or queried) for this field.
    pub fn normalise(&self, text: &str) -> String {
        match self {
            SearchField::Reference => fold(text).replace(' ', ""),
            SearchField::Name => fold(text),
            SearchField::Email => text.trim().to_lowercase(),
            SearchField::Phone => phone_digits(text),
        }
    }

    /// The prefix to look up for a query `q`, if this field can match it at all (a query
    /// with letters is not a phone number).
    pub fn query_prefix(&self, q: &str) -> Option<String> {
        if *self == SearchField::Phone && q.chars().any(char::is_alphabetic) {
            return None;
        }
        let prefix = self.normalise(q);
        (prefix.chars().count() >= MIN_QUERY_CHARS).then_some(prefix)
    }
}

/// A query must normalise to at least this many characters: the search index's partition
/// is the first two characters, which spreads writes over hundreds of partitions.
pub const MIN_QUERY_CHARS: usize = 2;

/// The search partition of a normalised value (its first two characters).
pub fn partition_of(normalised: &str) -> Option<String> {
    let head: String = normalised.chars().take(MIN_QUERY_CHARS).collect();
    (head.chars().count() == MIN_QUERY_CHARS).then_some(head)
}

/// Lower case, accents removed (NFKD minus combining marks), every run of punctuation or
/// space one space, trimmed.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else {
            pending_space = true;
        }
    }
    out
}

/// The digits of a phone number (`+1 (415) 555-0123` → `14155550123`).
pub fn phone_digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_case_accents_and_punctuation() {
        assert_eq!(fold("  José  GARCÍA-López "), "jose garcia lopez");
        assert_eq!(fold("Zoë O'Brien"), "zoe o brien");
        assert_eq!(
            SearchField::Name.query_prefix("JOSE GAR").as_deref(),
            Some("jose gar")
        );
    }

    #[test]
    fn phones_and_references_normalise() {
        assert_eq!(
            SearchField::Phone.normalise("+1 (415) 555-0123"),
            "14155550123"
        );
        assert_eq!(
            SearchField::Phone.query_prefix("(141) 5").as_deref(),
            Some("1415")
        );
        assert_eq!(SearchField::Phone.query_prefix("ann"), None);
        assert_eq!(SearchField::Reference.normalise("ACC-00/12"), "acc0012");
        assert_eq!(
            SearchField::Email.normalise(" Ann@Example.COM"),
            "ann@example.com"
        );
        assert_eq!(SearchField::Name.query_prefix("a"), None);
        assert_eq!(partition_of("ab"), Some("ab".into()));
        assert_eq!(partition_of("é"), None);
    }
}
