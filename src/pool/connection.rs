//! Storage connection settings, resolved the way Azure Functions resolves a `connection` name:
//! `<NAME>` is a connection string, else `<NAME>__queueServiceUri` (or `<NAME>__accountName`)
//! with an optional `<NAME>__clientId` selects a managed identity.

use crate::secret::Secret;
use base64::Engine as _;
use url::Url;

/// Azurite's documented, public development account (not a secret: it is the same everywhere).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's documented, public development account key.
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Azurite's default queue endpoint for `UseDevelopmentStorage=true`.
pub const DEV_QUEUE_ENDPOINT: &str = "http://127.0.0.1:10001/devstoreaccount1";

/// How to reach and authenticate to the queue service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConnection {
    /// An account name and key: requests are authorized with an account SAS signed locally.
    Sas {
        account: String,
        account_key: Secret,
        queue_endpoint: Url,
    },
    /// Entra ID through the managed identity of the host (system-assigned, or user-assigned by client id).
    ManagedIdentity {
        queue_service_uri: Url,
        client_id: Option<String>,
    },
}

impl StorageConnection {
    /// The queue service endpoint (never carries credentials).
    pub fn endpoint(&self) -> &Url {
        match self {
            StorageConnection::Sas { queue_endpoint, .. } => queue_endpoint,
            StorageConnection::ManagedIdentity {
                queue_service_uri, ..
            } => queue_service_uri,
        }
    }
}

/// A connection setting that is missing or malformed. Displays as one line:
/// `<setting>: <rule>`; never contains the account key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {rule}")]
pub struct ConnectionError {
    pub setting: String,
    pub rule: String,
}

impl ConnectionError {
    fn new(setting: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            rule: rule.into(),
        }
    }
}

/// Resolves the connection named `connection_name` from settings read through `lookup`
/// (the environment in production; a map in tests). Blank values count as unset.
pub fn resolve(
    connection_name: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<StorageConnection, ConnectionError> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

    if let Some(conn_str) = get(connection_name) {
        return parse_connection_string(connection_name, &conn_str);
    }

    let uri_setting = format!("{connection_name}__queueServiceUri");
    let account_setting = format!("{connection_name}__accountName");
    let client_id = get(&format!("{connection_name}__clientId")).map(|v| v.trim().to_owned());
    if let Some(uri) = get(&uri_setting) {
        let url = parse_endpoint(&uri_setting, uri.trim())?;
        if url.scheme() != "https" {
            // The SDK refuses to send a bearer token over plain http.
            return Err(ConnectionError::new(
                uri_setting,
                "a managed identity needs an https:// queue service URI",
            ));
        }
        return Ok(StorageConnection::ManagedIdentity {
            queue_service_uri: url,
            client_id,
        });
    }
    if let Some(account) = get(&account_setting) {
        let account = account.trim();
        check_account_name(&account_setting, account)?;
        let url = parse_endpoint(
            &account_setting,
            &format!("https://{account}.queue.core.windows.net"),
        )?;
        return Ok(StorageConnection::ManagedIdentity {
            queue_service_uri: url,
            client_id,
        });
    }

    Err(ConnectionError::new(
        connection_name,
        format!(
            "not set: set it to a storage connection string, or set {uri_setting} \
             (and optionally {connection_name}__clientId) to use a managed identity"
        ),
    ))
}

/// Parses `Key=Value;…` (keys case-insensitive, values may contain `=`).
fn parse_connection_string(setting: &str, s: &str) -> Result<StorageConnection, ConnectionError> {
    let mut use_dev = None;
    let mut account = None;
    let mut key = None;
    let mut queue_endpoint = None;
    let mut protocol = None;
    let mut suffix = None;
    let mut has_sas = false;

    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            // Never echo the part: it could be a key pasted without its name.
            return Err(ConnectionError::new(
                setting,
                "connection string has a part without '=' (expected Key=Value;…)",
            ));
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "usedevelopmentstorage" => use_dev = Some(v.to_owned()),
            "accountname" => account = Some(v.to_owned()),
            "accountkey" => key = Some(v.to_owned()),
            "queueendpoint" => queue_endpoint = Some(v.to_owned()),
            "defaultendpointsprotocol" => protocol = Some(v.to_ascii_lowercase()),
            "endpointsuffix" => suffix = Some(v.to_owned()),
            "sharedaccesssignature" => has_sas = true,
            // BlobEndpoint, TableEndpoint, FileEndpoint, …: not ours.
            _ => {}
        }
    }

    if let Some(dev) = use_dev {
        if !dev.eq_ignore_ascii_case("true") {
            return Err(ConnectionError::new(
                setting,
                "UseDevelopmentStorage must be true when present",
            ));
        }
        return Ok(StorageConnection::Sas {
            account: DEV_ACCOUNT.to_owned(),
            account_key: Secret::new(DEV_ACCOUNT_KEY),
            queue_endpoint: parse_endpoint(setting, DEV_QUEUE_ENDPOINT)?,
        });
    }

    let Some(account) = account.filter(|a| !a.is_empty()) else {
        return Err(ConnectionError::new(
            setting,
            "connection string has no AccountName",
        ));
    };
    check_account_name(setting, &account)?;
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        let rule = if has_sas {
            "connection string has no AccountKey (SharedAccessSignature connection strings are not supported: use AccountKey or a managed identity)"
        } else {
            "connection string has no AccountKey"
        };
        return Err(ConnectionError::new(setting, rule));
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(&key);
    if !matches!(decoded, Ok(ref bytes) if !bytes.is_empty()) {
        return Err(ConnectionError::new(
            setting,
            "connection string AccountKey is not valid base64",
        ));
    }

    let endpoint = match queue_endpoint.filter(|e| !e.is_empty()) {
        Some(e) => parse_endpoint(setting, &e)?,
        None => {
            let protocol = protocol.unwrap_or_else(|| "https".to_owned());
            if protocol != "https" && protocol != "http" {
                return Err(ConnectionError::new(
                    setting,
                    "DefaultEndpointsProtocol must be https or http",
                ));
            }
            let suffix = suffix.filter(|s| !s.is_empty());
            let suffix = suffix.as_deref().unwrap_or("core.windows.net");
            parse_endpoint(setting, &format!("{protocol}://{account}.queue.{suffix}"))?
        }
    };

    Ok(StorageConnection::Sas {
        account,
        account_key: Secret::new(key),
        queue_endpoint: endpoint,
    })
}

/// An http(s) base URL without query or fragment, normalized without a trailing slash
/// so that a queue name can be appended as one path segment.
fn parse_endpoint(setting: &str, s: &str) -> Result<Url, ConnectionError> {
    let mut url = Url::parse(s)
        .map_err(|_| ConnectionError::new(setting, "queue endpoint is not a valid absolute URL"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(ConnectionError::new(
            setting,
            "queue endpoint must be an http:// or https:// URL",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConnectionError::new(setting, "queue endpoint has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        // A SAS or credentials in the endpoint would end up in logs and error messages.
        return Err(ConnectionError::new(
            setting,
            "queue endpoint must not carry a query string, fragment or user info",
        ));
    }
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

/// Storage account names: 3 to 24 lowercase letters and digits (Azurite's `devstoreaccount1` fits).
fn check_account_name(setting: &str, account: &str) -> Result<(), ConnectionError> {
    let ok = (3..=24).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ConnectionError::new(
            setting,
            "storage account name must be 3 to 24 lowercase letters and digits",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "c2VjcmV0LWtleS1ieXRlcy1mb3ItdGVzdHM=";

    fn resolve_with(pairs: &[(&str, &str)]) -> Result<StorageConnection, ConnectionError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve("AzureWebJobsStorage", |k| map.get(k).cloned())
    }

    fn sas(c: StorageConnection) -> (String, String, String) {
        match c {
            StorageConnection::Sas {
                account,
                account_key,
                queue_endpoint,
            } => (
                account,
                account_key.expose().to_owned(),
                queue_endpoint.to_string(),
            ),
            other => panic!("expected Sas, got {other:?}"),
        }
    }

    #[test]
    fn development_storage() {
        let c = resolve_with(&[("AzureWebJobsStorage", "UseDevelopmentStorage=true")]).unwrap();
        assert_eq!(
            sas(c),
            (
                "devstoreaccount1".into(),
                DEV_ACCOUNT_KEY.into(),
                "http://127.0.0.1:10001/devstoreaccount1".into()
            )
        );
        // Case-insensitive keys and values, trailing semicolon.
        let c = resolve_with(&[("AzureWebJobsStorage", "usedevelopmentstorage=TRUE;")]).unwrap();
        assert_eq!(sas(c).0, "devstoreaccount1");
    }

    #[test]
    fn explicit_queue_endpoint_and_key_with_equals() {
        let s = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};QueueEndpoint=http://127.0.0.1:4567/devstoreaccount1/;"
        );
        let c = resolve_with(&[("AzureWebJobsStorage", &s)]).unwrap();
        assert_eq!(
            sas(c),
            (
                "devstoreaccount1".into(),
                DEV_ACCOUNT_KEY.into(),
                "http://127.0.0.1:4567/devstoreaccount1".into()
            )
        );
    }

    #[test]
    fn protocol_and_suffix() {
        let s = format!("DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey={KEY}");
        let c = resolve_with(&[("AzureWebJobsStorage", &s)]).unwrap();
        assert_eq!(sas(c).2, "https://acct1.queue.core.windows.net/");

        let s = format!(
            "accountkey={KEY};ACCOUNTNAME=acct1;EndpointSuffix=core.usgovcloudapi.net;DefaultEndpointsProtocol=HTTP"
        );
        let c = resolve_with(&[("AzureWebJobsStorage", &s)]).unwrap();
        let (account, key, endpoint) = sas(c);
        assert_eq!(account, "acct1");
        assert_eq!(key, KEY);
        assert_eq!(endpoint, "http://acct1.queue.core.usgovcloudapi.net/");
    }

    #[test]
    fn managed_identity() {
        let c = resolve_with(&[(
            "AzureWebJobsStorage__queueServiceUri",
            "https://acct1.queue.core.windows.net/",
        )])
        .unwrap();
        assert_eq!(
            c,
            StorageConnection::ManagedIdentity {
                queue_service_uri: Url::parse("https://acct1.queue.core.windows.net").unwrap(),
                client_id: None
            }
        );
        let c = resolve_with(&[
            (
                "AzureWebJobsStorage__queueServiceUri",
                "https://acct1.queue.core.windows.net",
            ),
            ("AzureWebJobsStorage__clientId", "1234-abcd"),
        ])
        .unwrap();
        assert!(matches!(
            c,
            StorageConnection::ManagedIdentity { client_id: Some(ref id), .. } if id == "1234-abcd"
        ));
        let c = resolve_with(&[("AzureWebJobsStorage__accountName", "acct1")]).unwrap();
        assert_eq!(
            c.endpoint().as_str(),
            "https://acct1.queue.core.windows.net/"
        );
    }

    #[test]
    fn connection_string_wins_over_identity_and_blank_is_unset() {
        let s = format!("AccountName=acct1;AccountKey={KEY}");
        let c = resolve_with(&[
            ("AzureWebJobsStorage", &s),
            (
                "AzureWebJobsStorage__queueServiceUri",
                "https://other.queue.core.windows.net",
            ),
        ])
        .unwrap();
        assert_eq!(sas(c).0, "acct1");
        let c = resolve_with(&[
            ("AzureWebJobsStorage", "  "),
            (
                "AzureWebJobsStorage__queueServiceUri",
                "https://other.queue.core.windows.net",
            ),
        ])
        .unwrap();
        assert!(matches!(c, StorageConnection::ManagedIdentity { .. }));
    }

    /// Settings, then the setting the error must name, then a word of the rule it must state.
    type ErrorCase = (Vec<(&'static str, String)>, &'static str, &'static str);

    #[test]
    fn errors_name_the_setting_and_never_the_key() {
        let secret_key = "c3VwZXItc2VjcmV0LWFjY291bnQta2V5LXZhbHVl";
        let cases: Vec<ErrorCase> = vec![
            (vec![], "AzureWebJobsStorage", "not set"),
            (
                vec![("AzureWebJobsStorage", format!("AccountKey={secret_key}"))],
                "AzureWebJobsStorage",
                "no AccountName",
            ),
            (
                vec![("AzureWebJobsStorage", "AccountName=acct1".to_owned())],
                "AzureWebJobsStorage",
                "no AccountKey",
            ),
            (
                vec![(
                    "AzureWebJobsStorage",
                    "AccountName=acct1;SharedAccessSignature=sv=x&sig=abc".to_owned(),
                )],
                "AzureWebJobsStorage",
                "not supported",
            ),
            (
                vec![(
                    "AzureWebJobsStorage",
                    format!("AccountName=acct1;AccountKey={secret_key}!!"),
                )],
                "AzureWebJobsStorage",
                "not valid base64",
            ),
            (
                vec![("AzureWebJobsStorage", format!("{secret_key};AccountName=a"))],
                "AzureWebJobsStorage",
                "without '='",
            ),
            (
                vec![(
                    "AzureWebJobsStorage",
                    format!("AccountName=acct1;AccountKey={secret_key};QueueEndpoint=not a url"),
                )],
                "AzureWebJobsStorage",
                "not a valid absolute URL",
            ),
            (
                vec![(
                    "AzureWebJobsStorage",
                    format!(
                        "AccountName=acct1;AccountKey={secret_key};QueueEndpoint=https://h/?sig={secret_key}"
                    ),
                )],
                "AzureWebJobsStorage",
                "must not carry a query",
            ),
            (
                vec![(
                    "AzureWebJobsStorage",
                    format!(
                        "AccountName=acct1;AccountKey={secret_key};DefaultEndpointsProtocol=ftp"
                    ),
                )],
                "AzureWebJobsStorage",
                "DefaultEndpointsProtocol",
            ),
            (
                vec![(
                    "AzureWebJobsStorage",
                    format!("AccountName=Bad_Name;AccountKey={secret_key}"),
                )],
                "AzureWebJobsStorage",
                "account name",
            ),
            (
                vec![(
                    "AzureWebJobsStorage",
                    "UseDevelopmentStorage=false".to_owned(),
                )],
                "AzureWebJobsStorage",
                "UseDevelopmentStorage",
            ),
            (
                vec![(
                    "AzureWebJobsStorage__queueServiceUri",
                    "http://acct1.queue.core.windows.net".to_owned(),
                )],
                "AzureWebJobsStorage__queueServiceUri",
                "https",
            ),
            (
                vec![("AzureWebJobsStorage__accountName", "NO".to_owned())],
                "AzureWebJobsStorage__accountName",
                "account name",
            ),
        ];
        for (pairs, setting, rule) in cases {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let err = resolve_with(&pairs).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("{setting}: ")),
                "{text:?} should start with {setting}"
            );
            assert!(text.contains(rule), "{text:?} should mention {rule:?}");
            assert!(!text.contains(secret_key), "{text:?} leaks the key");
            assert!(!text.contains('\n'), "{text:?} is not one line");
            assert!(!format!("{err:?}").contains(secret_key));
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let s = format!("AccountName=acct1;AccountKey={KEY}");
        let c = resolve_with(&[("AzureWebJobsStorage", &s)]).unwrap();
        assert!(!format!("{c:?}").contains(KEY));
    }
}
