//! Hiding passwords in connection strings, before they reach a `Debug`
//! output, an error or a log line.

/// Keys whose value is a secret, in key=value strings and URL queries.
const SECRET_KEYS: [&str; 4] = ["password", "passwd", "pass", "pwd"];

use super::MASK;

/// `url` with its password replaced by `***`: the password of a
/// `scheme://user:password@host/...` URL, and the value of any
/// `password=` / `pass=` / `pwd=` key (URL query or PostgreSQL key=value
/// string, quoted or not).
pub(crate) fn redact(url: &str) -> String {
    let mut out = redact_userinfo(url);
    out = redact_keys(&out);
    out
}

/// The password of a URL's user info, if any (to scrub it from driver
/// messages that might echo it).
pub(crate) fn userinfo_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    let (_, password) = authority[..at].split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `text` with every occurrence of `secret` replaced by `***`.
pub(crate) fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, MASK),
        _ => text.to_owned(),
    }
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    match authority[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{MASK}{}", &rest[at..]),
        None => url.to_owned(),
    }
}

fn redact_keys(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if let Some(value_start) = secret_key_at(s, i) {
            out.push_str(&s[i..value_start]);
            out.push_str(MASK);
            i = value_end(bytes, value_start);
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// If a secret key starts at `i` (after a separator) and is followed by
/// `=`, the index where its value starts.
fn secret_key_at(s: &str, i: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    if i > 0 && !matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'?' | b'&' | b';') {
        return None;
    }
    for key in SECRET_KEYS {
        let end = i + key.len();
        if end <= s.len() && s.is_char_boundary(end) && s[i..end].eq_ignore_ascii_case(key) {
            let mut j = end;
            while j < bytes.len() && bytes[j] == b' ' {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'=' {
                j += 1;
                while j < bytes.len() && bytes[j] == b' ' {
                    j += 1;
                }
                return Some(j);
            }
        }
    }
    None
}

/// Where a value starting at `start` ends: after its closing quote for a
/// `'quoted \' value'`, else at the next space, `&`, `;` or `#`.
fn value_end(bytes: &[u8], start: usize) -> usize {
    if bytes.get(start) == Some(&b'\'') {
        let mut j = start + 1;
        while j < bytes.len() {
            match bytes[j] {
                b'\\' => j += 2,
                b'\'' => return j + 1,
                _ => j += 1,
            }
        }
        return bytes.len();
    }
    let mut j = start;
    while j < bytes.len() && !matches!(bytes[j], b' ' | b'\t' | b'\n' | b'&' | b';' | b'#') {
        j += 1;
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_password_is_masked() {
        assert_eq!(
            redact("postgres://app:s3cr3t@db.example:5432/orders?sslmode=require"),
            "postgres://app:***@db.example:5432/orders?sslmode=require"
        );
        assert_eq!(
            redact("mysql://root:p@ss@127.0.0.1/test"),
            "mysql://root:***@127.0.0.1/test"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
    }

    #[test]
    fn key_value_passwords_are_masked() {
        assert_eq!(
            redact("host=/run/pg user=app password=s3cr3t dbname=x"),
            "host=/run/pg user=app password=*** dbname=x"
        );
        assert_eq!(
            redact(r"user=app password = 'it\'s secret' dbname=x"),
            "user=app password = *** dbname=x"
        );
        assert_eq!(
            redact("postgres://h/db?user=a&password=s3cr3t&x=1"),
            "postgres://h/db?user=a&password=***&x=1"
        );
        assert_eq!(redact("passwordless=1"), "passwordless=1");
    }

    #[test]
    fn userinfo_password_is_found_and_scrubbed() {
        let url = "mysql://root:hunter2@127.0.0.1/test";
        assert_eq!(userinfo_password(url), Some("hunter2"));
        assert_eq!(
            scrub("bad hunter2 value", userinfo_password(url)),
            "bad *** value"
        );
        assert_eq!(userinfo_password("mysql://root@h/db"), None);
    }
}
