//! The SQLite semantics PocketBase's filters inherit: storage classes, the affinity applied
//! before a comparison, three-valued logic, `LIKE … ESCAPE '\'`, and how numbers become text.

use std::borrow::Cow;
use std::cmp::Ordering;

/// A SQLite value (no BLOBs: PocketBase stores none that filters reach).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(Cow<'a, str>),
}

/// The affinity of an operand: a column's, or none for parameters and expressions
/// (`json_extract`, `LOWER`, `COALESCE`, `json_each.value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aff {
    None,
    Text,
    Numeric,
}

impl<'a> Val<'a> {
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    /// The value as SQLite renders it to text (`CAST(x AS TEXT)`), `None` for NULL.
    pub(crate) fn to_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Val::Null => None,
            Val::Int(i) => Some(Cow::Owned(i.to_string())),
            Val::Real(r) => Some(Cow::Owned(real_to_text(*r))),
            Val::Text(t) => Some(Cow::Borrowed(t.as_ref())),
        }
    }

    fn with_affinity(self, aff: Aff) -> Val<'a> {
        match (aff, self) {
            (Aff::Numeric, Val::Text(t)) => match text_to_number(&t) {
                Some(n) => n,
                None => Val::Text(t),
            },
            (Aff::Text, v @ (Val::Int(_) | Val::Real(_))) => match v.to_text() {
                Some(t) => Val::Text(Cow::Owned(t.into_owned())),
                None => Val::Null,
            },
            (_, v) => v,
        }
    }
}

/// Applies the affinities SQLite applies to the operands of a comparison: NUMERIC wins over
/// TEXT/none, TEXT over none.
pub(crate) fn coerce<'a, 'b>(l: Val<'a>, la: Aff, r: Val<'b>, ra: Aff) -> (Val<'a>, Val<'b>) {
    match (la, ra) {
        (Aff::Numeric, Aff::Text | Aff::None) => (l, r.with_affinity(Aff::Numeric)),
        (Aff::Text | Aff::None, Aff::Numeric) => (l.with_affinity(Aff::Numeric), r),
        (Aff::Text, Aff::None) => (l, r.with_affinity(Aff::Text)),
        (Aff::None, Aff::Text) => (l.with_affinity(Aff::Text), r),
        _ => (l, r),
    }
}

/// SQLite's ordering of two non-NULL values: numbers before text, text by bytes (BINARY).
pub(crate) fn order(l: &Val, r: &Val) -> Option<Ordering> {
    Some(match (l, r) {
        (Val::Null, _) | (_, Val::Null) => return None,
        (Val::Int(a), Val::Int(b)) => a.cmp(b),
        (Val::Real(a), Val::Real(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
        (Val::Int(a), Val::Real(b)) => int_real_cmp(*a, *b),
        (Val::Real(a), Val::Int(b)) => int_real_cmp(*b, *a).reverse(),
        (Val::Int(_) | Val::Real(_), Val::Text(_)) => Ordering::Less,
        (Val::Text(_), Val::Int(_) | Val::Real(_)) => Ordering::Greater,
        (Val::Text(a), Val::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
    })
}

fn int_real_cmp(i: i64, r: f64) -> Ordering {
    if r.is_nan() {
        return Ordering::Greater;
    }
    // ±2^63, the ends of the i64 range
    if r >= 9_223_372_036_854_775_808.0_f64 {
        return Ordering::Less;
    }
    if r < -9_223_372_036_854_775_808.0_f64 {
        return Ordering::Greater;
    }
    let t = r as i64; // truncates toward zero, in range here
    match i.cmp(&t) {
        Ordering::Equal => {
            let frac = r - t as f64;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

/// A comparison operator of SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rel {
    Eq,
    Is,
    IsNot,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// `l <rel> r` with the operands' affinities; `None` is SQL NULL.
pub(crate) fn compare(l: Val, la: Aff, rel: Rel, r: Val, ra: Aff) -> Option<bool> {
    let (l, r) = coerce(l, la, r, ra);
    match rel {
        Rel::Is | Rel::IsNot => {
            let same = match (l.is_null(), r.is_null()) {
                (true, true) => true,
                (true, false) | (false, true) => false,
                _ => order(&l, &r) == Some(Ordering::Equal),
            };
            Some(same == (rel == Rel::Is))
        }
        _ => {
            let o = order(&l, &r)?;
            Some(match rel {
                Rel::Eq => o == Ordering::Equal,
                Rel::Lt => o == Ordering::Less,
                Rel::Lte => o != Ordering::Greater,
                Rel::Gt => o == Ordering::Greater,
                Rel::Gte => o != Ordering::Less,
                Rel::Is | Rel::IsNot => unreachable_false(),
            })
        }
    }
}

// Kept out of line so the match above stays exhaustive without a panic path.
fn unreachable_false() -> bool {
    false
}

pub(crate) fn and(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

pub(crate) fn or(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// What NUMERIC affinity makes of a text: a number if the whole text (spaces around allowed)
/// is an integer or real literal, an integer if it has neither `.` nor an exponent and fits.
pub(crate) fn text_to_number(t: &str) -> Option<Val<'static>> {
    let s = t.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{0b}' | '\u{0c}'));
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    let mut is_int = true;
    if i < b.len() && b[i] == b'.' {
        is_int = false;
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        is_int = false;
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    if is_int && let Ok(v) = s.trim_start_matches('+').parse::<i64>() {
        return Some(Val::Int(v));
    }
    s.parse::<f64>().ok().map(Val::Real)
}

/// SQLite's text for a REAL: the shortest digits that round-trip, `%g`-style exponent
/// switch, and always a decimal point (`5.0`, `1.0e+20`, `1.0e-05`).
pub(crate) fn real_to_text(r: f64) -> String {
    if r.is_nan() {
        return String::new();
    }
    if r.is_infinite() {
        return if r > 0.0 { "Inf".into() } else { "-Inf".into() };
    }
    if r == 0.0 {
        return if r.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{r:e}"); // e.g. "-1.2345e-7", "5e0"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(24);
    if neg {
        out.push('-');
    }
    if !(-4..=15).contains(&exp) {
        out.push_str(&digits[..1]);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&e.to_string());
        return out;
    }
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
        return out;
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        out.push_str(&digits);
        for _ in digits.len()..int_len {
            out.push('0');
        }
        out.push_str(".0");
    } else {
        out.push_str(&digits[..int_len]);
        out.push('.');
        out.push_str(&digits[int_len..]);
    }
    out
}

/// `text LIKE pattern ESCAPE '\'`: `%` any run, `_` one character, `\` makes the next
/// character literal (a trailing `\` matches nothing), ASCII letters case-insensitive.
pub(crate) fn like(text: &str, pattern: &str) -> bool {
    let t: &[u8] = text.as_bytes();
    let p: &[u8] = pattern.as_bytes();
    like_at(t, p)
}

fn next_char(s: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < s.len() && (s[j] & 0xC0) == 0x80 {
        j += 1;
    }
    j
}

fn like_at(t: &[u8], p: &[u8]) -> bool {
    // Iterative matching with one backtrack point for the last `%` seen.
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None; // (pattern after %, text position)
    loop {
        if pi < p.len() {
            match p[pi] {
                b'%' => {
                    pi += 1;
                    star = Some((pi, ti));
                    continue;
                }
                b'_' => {
                    if ti < t.len() {
                        ti = next_char(t, ti);
                        pi += 1;
                        continue;
                    }
                }
                c => {
                    let (lit_start, lit_end) = if c == b'\\' {
                        if pi + 1 >= p.len() {
                            return false;
                        }
                        (pi + 1, next_char(p, pi + 1))
                    } else {
                        (pi, next_char(p, pi))
                    };
                    let lit = &p[lit_start..lit_end];
                    if ti < t.len() {
                        let tend = next_char(t, ti);
                        let tc = &t[ti..tend];
                        let same = lit == tc
                            || (lit.len() == 1
                                && tc.len() == 1
                                && lit[0].eq_ignore_ascii_case(&tc[0]));
                        if same {
                            ti = tend;
                            pi = lit_end;
                            continue;
                        }
                    }
                }
            }
        } else if ti == t.len() {
            return true;
        }
        // mismatch: retry from the last `%`, one character further in the text
        match star {
            Some((sp, st)) if st < t.len() => {
                let st = next_char(t, st);
                star = Some((sp, st));
                pi = sp;
                ti = st;
            }
            _ => return false,
        }
    }
}

/// `search.wrapLikeParams`, bug-compatible: a text without an unescaped `%` has its
/// unescaped `\`, `%`, `_` escaped (not a special right after another) and is wrapped in `%`.
pub(crate) fn wrap_like(v: &str) -> Cow<'_, str> {
    if contains_unescaped(v, '%') {
        return Cow::Borrowed(v);
    }
    let rs: Vec<char> = v.chars().collect();
    let special = |c: char| c == '\\' || c == '%' || c == '_';
    let mut out: Vec<char> = Vec::with_capacity(rs.len() * 2 + 2);
    let mut matched = false;
    for i in (0..rs.len()).rev() {
        if matched {
            if rs[i] != '\\' {
                out.push('\\');
            }
            matched = false;
        } else if special(rs[i]) {
            matched = true;
        }
        out.push(rs[i]);
        if i == 0 && matched {
            out.push('\\');
        }
    }
    out.reverse();
    let mut s = String::with_capacity(out.len() + 2);
    s.push('%');
    s.extend(out);
    s.push('%');
    Cow::Owned(s)
}

fn contains_unescaped(s: &str, ch: char) -> bool {
    let mut prev = '\0';
    for c in s.chars() {
        if c == ch && prev != '\\' {
            return true;
        }
        prev = if c == '\\' && prev == '\\' { '\0' } else { c };
    }
    false
}

/// SQLite's built-in `lower()`: ASCII only.
pub(crate) fn lower(v: Val<'_>) -> Val<'_> {
    match v {
        Val::Null => Val::Null,
        Val::Text(t) => {
            if t.bytes().any(|b| b.is_ascii_uppercase()) {
                Val::Text(Cow::Owned(t.to_ascii_lowercase()))
            } else {
                Val::Text(t)
            }
        }
        other => match other.to_text() {
            Some(t) => Val::Text(Cow::Owned(t.into_owned())),
            None => Val::Null,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Val<'_> {
        Val::Text(Cow::Borrowed(s))
    }

    #[test]
    fn reals_render_like_sqlite() {
        for (r, t) in [
            (5.0, "5.0"),
            (5.5, "5.5"),
            (0.1, "0.1"),
            (0.30000000000000004, "0.30000000000000004"),
            (1e20, "1.0e+20"),
            (1e300, "1.0e+300"),
            (0.00001, "1.0e-05"),
            (0.0001, "0.0001"),
            (1234567890123456.5, "1234567890123456.5"),
            (123456789012345.5, "123456789012345.5"),
            (-2.5, "-2.5"),
        ] {
            assert_eq!(real_to_text(r), t, "{r}");
        }
    }

    #[test]
    fn numeric_affinity_of_text() {
        assert_eq!(text_to_number("5"), Some(Val::Int(5)));
        assert_eq!(text_to_number(" -5 "), Some(Val::Int(-5)));
        assert_eq!(text_to_number("5.0"), Some(Val::Real(5.0)));
        assert_eq!(text_to_number(".5"), Some(Val::Real(0.5)));
        assert_eq!(text_to_number("1e3"), Some(Val::Real(1000.0)));
        for t in ["", "abc", "5abc", "0x10", ".", "1e", "- 5"] {
            assert_eq!(text_to_number(t), None, "{t:?}");
        }
    }

    #[test]
    fn comparisons_follow_affinity() {
        // text column vs number parameter: the number becomes text ("5.0")
        assert_eq!(
            compare(text("5.0"), Aff::Text, Rel::Eq, Val::Real(5.0), Aff::None),
            Some(true)
        );
        assert_eq!(
            compare(text("5"), Aff::Text, Rel::Eq, Val::Real(5.0), Aff::None),
            Some(false)
        );
        // numeric column vs text parameter: the text becomes a number if it looks like one
        assert_eq!(
            compare(Val::Int(5), Aff::Numeric, Rel::Eq, text("5"), Aff::None),
            Some(true)
        );
        // no affinity on either side: numbers sort before text
        assert_eq!(
            compare(Val::Int(5), Aff::None, Rel::Lt, text("5"), Aff::None),
            Some(true)
        );
        assert_eq!(
            compare(Val::Null, Aff::None, Rel::Eq, Val::Null, Aff::None),
            None
        );
        assert_eq!(
            compare(Val::Null, Aff::None, Rel::Is, Val::Null, Aff::None),
            Some(true)
        );
        assert_eq!(
            compare(Val::Int(1), Aff::None, Rel::IsNot, Val::Null, Aff::None),
            Some(true)
        );
        assert_eq!(
            compare(Val::Int(3), Aff::None, Rel::Lt, Val::Real(3.5), Aff::None),
            Some(true)
        );
    }

    #[test]
    fn like_patterns() {
        assert!(like("abc", "%B%"));
        assert!(like("a_c%", "%a\\_c%"));
        assert!(!like("abc", "%a\\_c%"));
        assert!(like("abc", "a_c"));
        assert!(like("", "%%"));
        assert!(!like("abc", "abc\\"));
        assert!(like("ÄbÇ", "_b_"));
        assert!(!like("Ä", "ä")); // only ASCII folds
        assert!(like("xxaxxb", "%a%b"));
        assert!(!like("xxaxxb", "%a%c"));
    }

    #[test]
    fn three_valued_logic() {
        assert_eq!(and(None, Some(false)), Some(false));
        assert_eq!(and(None, Some(true)), None);
        assert_eq!(or(None, Some(true)), Some(true));
        assert_eq!(or(None, Some(false)), None);
    }
}
