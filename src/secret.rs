//! A wrapper for credentials: it cannot be printed, formatted or serialized by accident.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::EncodingKey;

/// A secret string. `Debug` and `Display` print `[redacted]`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Accepts PKCS#8 PEM text or base64 of it (as the original kept `pexip_jwt_key`); checks it
/// is an EC key jsonwebtoken can sign with. The error is a rule, never the key.
pub fn parse_private_key(raw: &str) -> Result<Secret, String> {
    let raw = raw.trim();
    let pem = if raw.contains("-----BEGIN") {
        raw.to_owned()
    } else {
        let compact: String = raw.split_whitespace().collect();
        let bytes = STANDARD
            .decode(compact)
            .map_err(|_| "must be PEM text or base64 of PEM text".to_owned())?;
        String::from_utf8(bytes).map_err(|_| "must be PEM text or base64 of PEM text".to_owned())?
    };
    if pem.contains("BEGIN EC PRIVATE KEY") {
        return Err("must be a PKCS#8 key (BEGIN PRIVATE KEY); convert it with \
                    `openssl pkcs8 -topk8 -nocrypt`"
            .into());
    }
    EncodingKey::from_ec_pem(pem.as_bytes())
        .map_err(|_| "must be an EC P-256 private key in PKCS#8 PEM".to_owned())?;
    Ok(Secret::new(pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway P-256 key made for these tests.
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjlz8epwBTei4uK3T
XdG/bW5cWhrd8v9AuOyMnBcBZ0ahRANCAAShh54imYu0t7Xyg+WHquB3h/dppQIg
mxIBVzSdiMjjKlERWdsxVOswWB7XES1QyIB9JYiN5db4pV2pfpy6wgQa
-----END PRIVATE KEY-----";

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn accepts_pem_and_base64_pem_and_hides_it() {
        let pem = parse_private_key(TEST_KEY).unwrap();
        assert_eq!(format!("{pem:?}"), "[redacted]");
        let b64 = STANDARD.encode(TEST_KEY);
        assert_eq!(parse_private_key(&b64).unwrap().expose(), pem.expose());
    }

    #[test]
    fn rejects_other_keys_without_echoing_them() {
        for bad in [
            "not a key",
            "bm90IGEga2V5",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ] {
            let err = parse_private_key(bad).unwrap_err();
            assert!(!err.contains(bad), "{err}");
        }
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----";
        assert!(parse_private_key(sec1).unwrap_err().contains("PKCS#8"));
    }
}
