//! Masking secrets in text meant for people (terminal output, error messages, logs).
//!
//! Every URL that paysync prints or logs goes through [`url`]: the configuration's URLs come from
//! an operator, who may have written `https://admin:password@erp...` or `?token=...`. Masking is
//! done on the text, not by parsing, so that a URL too broken to parse (the very one an error
//! message is about) is masked too, and a good one is printed exactly as written.

/// Query parameters whose value is masked: anything that looks like a credential.
const SECRET_PARAMS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "sig",
    "credential",
];

/// `raw` with its userinfo (`user:password@`) replaced by `***@` and the values of secret-looking
/// query parameters (`password=`, `token=`, `api_key=`, ...) replaced by `***`.
pub fn url(raw: &str) -> String {
    let (head, fragment) = match raw.find('#') {
        Some(i) => raw.split_at(i),
        None => (raw, ""),
    };
    let (before_query, query) = match head.find('?') {
        Some(i) => (&head[..i], Some(&head[i + 1..])),
        None => (head, None),
    };
    let mut out = String::with_capacity(raw.len());
    match before_query.find("://") {
        Some(i) => {
            let start = i + 3;
            let end = before_query[start..]
                .find('/')
                .map_or(before_query.len(), |j| start + j);
            let authority = &before_query[start..end];
            out.push_str(&before_query[..start]);
            match authority.rfind('@') {
                Some(at) => {
                    out.push_str("***");
                    out.push_str(&authority[at..]);
                }
                None => out.push_str(authority),
            }
            out.push_str(&before_query[end..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(q) = query {
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out.push_str(fragment);
    out
}

fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| n.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_masked() {
        assert_eq!(
            url("https://admin:Pw0rd@erp.example.com/app?x=1"),
            "https://***@erp.example.com/app?x=1"
        );
        assert_eq!(
            url("https://tok3n@api.mobbex.com"),
            "https://***@api.mobbex.com"
        );
        assert_eq!(
            url("postgres://paysync:S3cr3t@db:5432/paysync"),
            "postgres://***@db:5432/paysync"
        );
        // A password holding `@` and `/`: everything before the last `@` of the authority goes.
        assert_eq!(url("https://a:p@ss@host/x"), "https://***@host/x");
    }

    #[test]
    fn secret_query_values_are_masked() {
        assert_eq!(
            url("postgres://db/paysync?sslmode=require&password=S3cr3t"),
            "postgres://db/paysync?sslmode=require&password=***"
        );
        assert_eq!(
            url("http://h/webhooks/mobbex/main?token=abc#frag"),
            "http://h/webhooks/mobbex/main?token=***#frag"
        );
        assert_eq!(url("http://h/?API_KEY=abc"), "http://h/?API_KEY=***");
    }

    #[test]
    fn urls_without_secrets_are_unchanged_even_when_they_do_not_parse() {
        for u in [
            "https://erp.example.com",
            "sqlite://paysync.db?mode=rwc",
            "sqlite::memory:",
            "not a url",
            "https://[::1",
            "",
        ] {
            assert_eq!(url(u), u);
        }
        // Broken, but the userinfo still goes.
        assert_eq!(url("ftp://u:Pw0rd@[::1"), "ftp://***@[::1");
    }
}
