//! Secrets: written inline, or read from the file named by `<key>_file` (relative paths are looked
//! up in `$CREDENTIALS_DIRECTORY`, where systemd's `LoadCredential=` puts them).
//!
//! A secret file is read with a size limit and only if it is a regular file: systemd credentials
//! are regular files, and anything else (`/dev/zero`, a FIFO, a directory) would grow memory
//! without limit or block the start. A secret sent in an HTTP header must be one that a header can
//! carry; found at start, not as a failure of every request.

use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::Settings;

/// Far more than any API key or token; small enough that a wrong path costs nothing.
pub(super) const FILE_LIMIT: u64 = 64 * 1024;

/// How a secret is sent, which decides the characters it may hold.
#[derive(Clone, Copy)]
pub(super) enum SentAs {
    /// In an HTTP header (API keys and tokens): visible ASCII and spaces only.
    Header,
    /// Compared with a URL's query parameter (the webhook token): no control characters.
    UrlToken,
}

pub(super) struct SecretKey<'a> {
    /// The key as named in messages, e.g. `erp.api_secret`.
    pub key: &'a str,
    pub inline: Option<String>,
    pub file: Option<String>,
    pub required: bool,
    pub sent_as: SentAs,
}

/// The secret of `s`, or `(key, problem)`; no problem shows the value.
pub(super) fn resolve(
    s: SecretKey<'_>,
    creds_dir: Option<&Path>,
) -> Result<Option<SecretString>, (String, String)> {
    let key = s.key;
    match (s.inline, s.file) {
        (Some(_), Some(_)) => Err((
            key.into(),
            format!("give either {key} or {key}_file, not both"),
        )),
        (Some(v), None) => {
            usable(&v, s.sent_as).map_err(|m| (key.to_string(), m))?;
            Ok(Some(SecretString::from(v)))
        }
        (None, Some(f)) => {
            let file_key = format!("{key}_file");
            let mut p = PathBuf::from(&f);
            if p.is_relative()
                && let Some(dir) = creds_dir
            {
                p = dir.join(p);
            }
            let v = read_secret_file(&p).map_err(|m| (file_key.clone(), m))?;
            usable(&v, s.sent_as)
                .map_err(|m| (file_key, format!("the secret in {}: {m}", p.display())))?;
            Ok(Some(SecretString::from(v)))
        }
        (None, None) if s.required => Err((
            key.into(),
            format!("missing (set {key}, or {key}_file naming a file that holds it)"),
        )),
        (None, None) => Ok(None),
    }
}

/// The secret in the file at `p` (without its trailing line break): a regular file of at most
/// [`FILE_LIMIT`] bytes of UTF-8 text.
fn read_secret_file(p: &Path) -> Result<String, String> {
    let shown = p.display();
    // O_NONBLOCK: opening a FIFO nobody writes to returns at once (and is refused below) instead
    // of blocking the start; it changes nothing for a regular file.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| format!("cannot read secret file {shown}: {e}"))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read secret file {shown}: {e}"))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(format!(
            "secret file {shown} is {kind}, not a regular file (give a file that holds the secret, as systemd's LoadCredential= does)"
        ));
    }
    let too_big =
        || format!("secret file {shown} is larger than 64 KiB: it does not hold a secret");
    if meta.len() > FILE_LIMIT {
        return Err(too_big());
    }
    // The file may grow after the stat: the read is bounded too.
    let mut buf = Vec::new();
    f.take(FILE_LIMIT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read secret file {shown}: {e}"))?;
    if buf.len() as u64 > FILE_LIMIT {
        return Err(too_big());
    }
    let text =
        String::from_utf8(buf).map_err(|_| format!("secret file {shown} is not UTF-8 text"))?;
    let v = text.trim_end_matches(['\n', '\r']).to_string();
    if v.trim().is_empty() {
        return Err(format!("secret file {shown} is empty"));
    }
    Ok(v)
}

/// Whether `v` can be used as the secret it is; the message never shows it.
fn usable(v: &str, sent_as: SentAs) -> Result<(), String> {
    if v.trim().is_empty() {
        return Err("expected a non-empty secret".into());
    }
    if v.trim() != v {
        return Err(
            "starts or ends with white space, which HTTP would drop (the value is not shown)"
                .into(),
        );
    }
    match sent_as {
        SentAs::Header if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) => Err(
            "holds characters an HTTP header cannot carry (control characters, line breaks or non-ASCII letters; the value is not shown)"
                .into(),
        ),
        SentAs::UrlToken if v.chars().any(char::is_control) => Err(
            "holds control characters or line breaks (the value is not shown)".into(),
        ),
        _ => Ok(()),
    }
}

/// A warning when the configuration file holds secrets and its mode lets group or others read
/// (or write) it; `None` when it does not.
pub fn exposure_warning(settings: &Settings) -> Option<String> {
    if settings.secrets_in_file.is_empty() {
        return None;
    }
    let mode = std::fs::metadata(&settings.file).ok()?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return None;
    }
    let f = settings.file.display();
    Some(format!(
        "WARNING: {f} holds secrets ({}) and group or others may read it (mode {mode:03o}): run `chmod 600 {f}`, or move the secrets to files named by *_file keys (e.g. api_secret_file = \"erpnext-api-secret\", read from $CREDENTIALS_DIRECTORY under systemd's LoadCredential=)",
        settings.secrets_in_file.join(", ")
    ))
}
