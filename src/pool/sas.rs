//! Account SAS signed locally from the account key: the official queue crate has no shared-key
//! support, so a connection string's key is turned into a short-lived SAS for the query string.
//!
//! It grants only what maxconf does with its queues ("Account SAS permissions by operation",
//! Create an account SAS, Azure Storage REST docs): Create Queue (container, `c`), Get Queue
//! Metadata (container, `r`), Put Message (`a`), Get and Delete Message (`p`), Peek (`r`),
//! Update Message (`u`), Clear Messages (`d`), the last five on objects. No service-level
//! access (list queues, service properties), no `w` (set metadata or ACLs), no `l`. It is
//! valid over HTTPS only, except for an http endpoint on loopback (Azurite).

use crate::secret::Secret;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::{Host, Url};

/// The SAS version that defines the string-to-sign below (the one with the encryption scope line).
pub const SAS_VERSION: &str = "2022-11-02";
/// Queue service only.
const SERVICES: &str = "q";
/// Container (queue) and object (message) level: queue creation is a container operation.
const RESOURCE_TYPES: &str = "co";
/// Read, delete (clear), add, create, update, process, in the documented order.
const PERMISSIONS: &str = "rdacup";
const HTTPS_ONLY: &str = "https";
/// Only for an http endpoint on loopback: Azurite.
const HTTPS_AND_HTTP: &str = "https,http";

/// Why a SAS could not be signed. Never contains the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("the account key is not valid base64")]
    KeyNotBase64,
    #[error("the SAS validity window cannot be formatted")]
    Time,
    #[error("an account key may only be used over https (plain http only to a loopback Azurite)")]
    InsecureEndpoint,
}

/// The protocols the SAS allows for requests to `endpoint`.
fn protocols(endpoint: &Url) -> Result<&'static str, SasError> {
    match endpoint.scheme() {
        "https" => Ok(HTTPS_ONLY),
        "http" if is_loopback(endpoint) => Ok(HTTPS_AND_HTTP),
        _ => Err(SasError::InsecureEndpoint),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Signs an account SAS for requests to `endpoint`, valid from `start` to `expiry`, and returns
/// it as a query string (without the leading `?`). The whole token is a secret: it carries `sig=`.
pub fn account_sas(
    account: &str,
    account_key: &Secret,
    endpoint: &Url,
    start: OffsetDateTime,
    expiry: OffsetDateTime,
) -> Result<Secret, SasError> {
    let spr = protocols(endpoint)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(account_key.expose())
        .map_err(|_| SasError::KeyNotBase64)?;
    let st = sas_time(start)?;
    let se = sas_time(expiry)?;
    let signature = sign(account, &key, &st, &se, spr);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", SAS_VERSION)
        .append_pair("ss", SERVICES)
        .append_pair("srt", RESOURCE_TYPES)
        .append_pair("sp", PERMISSIONS)
        .append_pair("st", &st)
        .append_pair("se", &se)
        .append_pair("spr", spr)
        .append_pair("sig", &signature)
        .finish();
    Ok(Secret::new(query))
}

/// The documented account SAS string-to-sign for versions 2020-12-06 and later: one line per
/// field (the empty ones are signed IP and encryption scope), ending with a newline.
fn string_to_sign(account: &str, st: &str, se: &str, spr: &str) -> String {
    [
        account,
        PERMISSIONS,
        SERVICES,
        RESOURCE_TYPES,
        st,
        se,
        "", // signed IP
        spr,
        SAS_VERSION,
        "", // signed encryption scope
        "",
    ]
    .join("\n")
}

fn sign(account: &str, key: &[u8], st: &str, se: &str, spr: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(string_to_sign(account, st, se, spr).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// ISO 8601 UTC to the second (`2026-01-02T03:04:05Z`), the form the service documents.
fn sas_time(t: OffsetDateTime) -> Result<String, SasError> {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .map_err(|_| SasError::Time)?;
    t.format(&Rfc3339).map_err(|_| SasError::Time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::connection::{DEV_ACCOUNT, DEV_ACCOUNT_KEY};
    use time::macros::datetime;

    #[test]
    fn string_to_sign_field_order() {
        assert_eq!(
            string_to_sign("acct", "S", "E", "https"),
            "acct\nrdacup\nq\nco\nS\nE\n\nhttps\n2022-11-02\n\n"
        );
    }

    /// Expected value computed with Azurite 3.37.0's own `generateAccountSASSignature`
    /// (the code that validates our requests) for the same inputs.
    #[test]
    fn known_vector_from_azurite() {
        let sas = account_sas(
            DEV_ACCOUNT,
            &Secret::new(DEV_ACCOUNT_KEY),
            &Url::parse("http://127.0.0.1:10001/devstoreaccount1").unwrap(),
            datetime!(2026-01-02 03:04:05.678 UTC),
            datetime!(2026-01-03 04:04:05 +01:00),
        )
        .unwrap();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(sas.expose().as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("sv"), Some("2022-11-02"));
        assert_eq!(get("ss"), Some("q"));
        assert_eq!(get("srt"), Some("co"));
        assert_eq!(get("sp"), Some("rdacup"));
        assert_eq!(get("st"), Some("2026-01-02T03:04:05Z"));
        assert_eq!(get("se"), Some("2026-01-03T03:04:05Z"));
        assert_eq!(get("spr"), Some("https,http"));
        assert_eq!(
            get("sig"),
            Some("Bjwv9BXtrezUHow8fIpyRo92x09X3//eudipigimZ7E=")
        );
    }

    #[test]
    fn deterministic_and_redacted() {
        let key = Secret::new(DEV_ACCOUNT_KEY);
        let st = datetime!(2026-05-01 00:00 UTC);
        let se = datetime!(2026-05-02 00:00 UTC);
        let https = Url::parse("https://acct.queue.core.windows.net").unwrap();
        let a = account_sas("acct", &key, &https, st, se).unwrap();
        let b = account_sas("acct", &key, &https, st, se).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, account_sas("acct2", &key, &https, st, se).unwrap());
        assert!(!format!("{a:?} {a}").contains("sig="));
    }

    /// Azure's signature for the same inputs with HTTPS only (Azurite 3.37.0's own signer).
    #[test]
    fn https_only_unless_loopback() {
        let key = Secret::new(DEV_ACCOUNT_KEY);
        let st = datetime!(2026-01-02 03:04:05 UTC);
        let se = datetime!(2026-01-03 03:04:05 UTC);
        let spr = |endpoint: &str| {
            let sas = account_sas(DEV_ACCOUNT, &key, &Url::parse(endpoint).unwrap(), st, se)?;
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(sas.expose().as_bytes())
                .into_owned()
                .collect();
            Ok::<_, SasError>(pairs)
        };
        let https = spr("https://acct.queue.core.windows.net").unwrap();
        assert!(https.contains(&("spr".into(), "https".into())));
        assert!(https.contains(&(
            "sig".into(),
            "j8jE5UnXCUKigxb729q3LzwbncBaytSZ9IBvaX5tieM=".into()
        )));
        for loopback in [
            "http://127.0.0.1:10001/devstoreaccount1",
            "http://localhost:10001/devstoreaccount1",
            "http://[::1]:10001/devstoreaccount1",
        ] {
            let pairs = spr(loopback).unwrap();
            assert!(
                pairs.contains(&("spr".into(), "https,http".into())),
                "{loopback}"
            );
        }
        for insecure in [
            "http://acct.queue.core.windows.net",
            "http://10.0.0.4:10001/devstoreaccount1",
            "http://azurite:10001/devstoreaccount1",
        ] {
            assert_eq!(
                spr(insecure).unwrap_err(),
                SasError::InsecureEndpoint,
                "{insecure}"
            );
        }
    }

    #[test]
    fn bad_key() {
        let err = account_sas(
            "acct",
            &Secret::new("not base64!"),
            &Url::parse("https://acct.queue.core.windows.net").unwrap(),
            OffsetDateTime::now_utc(),
            OffsetDateTime::now_utc(),
        )
        .unwrap_err();
        assert_eq!(err, SasError::KeyNotBase64);
        assert!(!err.to_string().contains("not base64!"));
    }
}
