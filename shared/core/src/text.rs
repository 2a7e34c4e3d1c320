//! What text shown to people may hold: no character that hides itself or
//! changes how the text around it reads. Descriptions and leak URLs follow
//! this rule.

use unicode_general_category::{GeneralCategory, get_general_category};

/// Control characters (Cc), format characters (Cf: bidirectional overrides
/// and isolates, zero-width spaces and joiners, the byte-order mark) and
/// line and paragraph separators (Zl, Zp).
pub fn hides_or_reorders(c: char) -> bool {
    c.is_control()
        || matches!(
            get_general_category(c),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_overrides_zero_width_and_separators_are_refused_but_not_letters() {
        for c in [
            '\u{7}', '\n', '\u{202E}', '\u{2066}', '\u{200B}', '\u{FEFF}', '\u{2028}', '\u{2029}',
        ] {
            assert!(hides_or_reorders(c), "{c:?}");
        }
        for c in ['a', 'é', 'ß', '日', ' ', '-', '/', '\u{05D0}'] {
            assert!(!hides_or_reorders(c), "{c:?}");
        }
    }
}
