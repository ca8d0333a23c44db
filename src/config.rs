//! Settings, read once from the environment at start-up and validated.
//!
//! Names and defaults are the ones SPEC.md lists. A missing or malformed setting is a
//! [`ConfigError`] naming the setting and the rule it broke; `main` prints it on one line and exits.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use crate::pool::connection::{self, StorageConnection};
use crate::secret::Secret;

/// One bad setting: its name and the rule it broke. Never carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {rule}")]
pub struct ConfigError {
    pub setting: String,
    pub rule: String,
}

impl ConfigError {
    fn new(setting: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            rule: rule.into(),
        }
    }
}

/// What create does when the pool has no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyFallback {
    /// Create a room on demand (it may take Pexip ~90 s to make it dialable).
    Create,
    /// Answer 503 with `Retry-After`.
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How maxconf authenticates to the Pexip Management API.
#[derive(Debug, Clone)]
pub enum PexipAuth {
    Basic {
        username: String,
        password: Secret,
    },
    /// OAuth2 client credentials with an ES256 JWT assertion; `private_key_pem` is PKCS#8 PEM text.
    OAuth {
        client_id: String,
        private_key_pem: Secret,
    },
}

#[derive(Debug, Clone)]
pub struct PexipSettings {
    pub base_url: Url,
    pub auth: PexipAuth,
    pub ca_cert_pem: Option<String>,
    pub timeout: Duration,
    pub max_concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// The connection name (`POOL_QUEUE_CONNECTION`), kept for messages.
    pub connection_name: String,
    pub connection: StorageConnection,
    pub queue_name: String,
    pub deletion_queue_name: String,
    pub target_size: u32,
    pub warmup: Duration,
    pub empty_fallback: EmptyFallback,
    pub gc_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub name_prefix: String,
    pub pin_length: usize,
    /// Extra fields merged into every new room's create body.
    pub template: Map<String, Value>,
    pub max_age: Duration,
    pub persistent_prefixes: Vec<String>,
}

impl RoomSettings {
    /// Persistent rooms are never deleted and never handed out.
    pub fn is_persistent(&self, name: &str) -> bool {
        self.persistent_prefixes
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()))
    }
}

#[derive(Debug, Clone)]
pub struct UuiSettings {
    pub allowed_hosts: Vec<String>,
    /// With `{host}` and `{video_call_id}` placeholders.
    pub tag_template: String,
}

#[derive(Debug, Clone)]
pub enum AuthMode {
    /// No token check in the function (APIM still validates); warned at start-up.
    None,
    Entra {
        tenant_id: String,
        audiences: Vec<String>,
        required_role: Option<String>,
        openid_config_url: Option<Url>,
        /// `AUTH_OPERATOR_ROLE`: the app role the management routes (`/api/manage/…`) require
        /// instead of the caller's. Unset: the management routes answer 403.
        operator_role: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct EventSinkCredentials {
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone)]
pub struct GenesysSettings {
    pub api_base: Url,
    /// Empty: the public room lookup is disabled (404).
    pub allowed_divisions: Vec<String>,
}

/// Everything maxconf reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `FUNCTIONS_CUSTOMHANDLER_PORT` when the host set it.
    pub port: Option<u16>,
    pub pool: PoolSettings,
    pub pexip: PexipSettings,
    pub rooms: RoomSettings,
    pub uui: UuiSettings,
    pub auth: AuthMode,
    pub event_sink: Option<EventSinkCredentials>,
    pub genesys: GenesysSettings,
    pub log_format: LogFormat,
    /// `TIMERS_ENABLED`: false on a staging slot, whose timer runs would act on production's
    /// queues and Pexip. Timer invocations are then logged no-ops.
    pub timers_enabled: bool,
    /// `SERVICE_HOURS` and friends: when Pexip is switched on.
    pub service_hours: crate::service_hours::ServiceHours,
}

/// Fields the service sets itself on a new room; `ROOM_TEMPLATE` may not override them.
const RESERVED_ROOM_FIELDS: &[&str] = &[
    "name",
    "aliases",
    "pin",
    "guest_pin",
    "allow_guests",
    "service_type",
    "tag",
    "description",
];

pub const DEFAULT_TAG_URL_TEMPLATE: &str =
    "https://{host}.gov.bc.ca/idcheck/protected/video/{video_call_id}";

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests and `maxconf dev`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);

        let port = env.parse_opt::<u16>("FUNCTIONS_CUSTOMHANDLER_PORT", "a TCP port number")?;

        let connection_name = env.string_or("POOL_QUEUE_CONNECTION", "AzureWebJobsStorage")?;
        let connection = connection::resolve(&connection_name, &lookup)
            .map_err(|e| ConfigError::new(e.setting, e.rule))?;
        let pool = PoolSettings {
            connection,
            queue_name: env.queue_name("POOL_QUEUE_NAME", "room-creation-queue")?,
            deletion_queue_name: env.queue_name("DELETION_QUEUE_NAME", "room-deletion-queue")?,
            target_size: env.ranged("POOL_TARGET_SIZE", 10, 0, 10_000)? as u32,
            warmup: Duration::from_secs(env.ranged("POOL_WARMUP_SECS", 90, 0, 3_600)?),
            empty_fallback: match env.string_or("POOL_EMPTY_FALLBACK", "create")?.as_str() {
                "create" => EmptyFallback::Create,
                "reject" => EmptyFallback::Reject,
                _ => {
                    return Err(ConfigError::new(
                        "POOL_EMPTY_FALLBACK",
                        "must be `create` or `reject`",
                    ));
                }
            },
            // Storage refuses an invisibility of 7 days or more.
            gc_grace: Duration::from_secs(env.ranged(
                "GC_GRACE_SECS",
                600,
                0,
                7 * 24 * 3_600 - 1,
            )?),
            connection_name,
        };

        let pexip = PexipSettings {
            base_url: env.base_url("PEXIP_BASE_URL")?,
            auth: pexip_auth(&env)?,
            ca_cert_pem: match env.get("PEXIP_CA_CERT") {
                None => None,
                Some(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Some(pem),
                Some(_) => {
                    return Err(ConfigError::new(
                        "PEXIP_CA_CERT",
                        "must be PEM text with a BEGIN CERTIFICATE block",
                    ));
                }
            },
            timeout: Duration::from_secs(env.ranged("PEXIP_TIMEOUT_SECS", 10, 1, 120)?),
            max_concurrency: env.ranged("PEXIP_MAX_CONCURRENCY", 5, 1, 100)? as usize,
        };

        let name_prefix = env.string_or("ROOM_NAME_PREFIX", "")?;
        if !name_prefix.chars().all(crate::room::is_room_name_char) || name_prefix.len() > 200 {
            return Err(ConfigError::new(
                "ROOM_NAME_PREFIX",
                "at most 200 characters of [A-Za-z0-9._~=+-]",
            ));
        }
        let persistent_prefixes = env.list_or("PERSISTENT_ROOM_PREFIXES", "test_,vkiosk_")?;
        if let Some(p) = persistent_prefixes
            .iter()
            .find(|p| name_prefix.starts_with(p.as_str()))
        {
            return Err(ConfigError::new(
                "ROOM_NAME_PREFIX",
                format!(
                    "must not start with the persistent prefix `{p}`: new rooms would be persistent"
                ),
            ));
        }
        let rooms = RoomSettings {
            name_prefix,
            pin_length: env.ranged("ROOM_PIN_LENGTH", 6, 4, 20)? as usize,
            template: room_template(&env)?,
            max_age: Duration::from_secs(
                3_600 * env.ranged("ROOM_MAX_AGE_HOURS", 24, 1, 24 * 365)?,
            ),
            persistent_prefixes,
        };

        let tag_template = env.string_or("TAG_URL_TEMPLATE", DEFAULT_TAG_URL_TEMPLATE)?;
        if !tag_template.contains("{video_call_id}") {
            return Err(ConfigError::new(
                "TAG_URL_TEMPLATE",
                "must contain the {video_call_id} placeholder",
            ));
        }
        let uui = UuiSettings {
            allowed_hosts: env.list_or("UUI_ALLOWED_HOSTS", "id,idtest,iddev")?,
            tag_template,
        };
        if uui.allowed_hosts.is_empty() {
            return Err(ConfigError::new(
                "UUI_ALLOWED_HOSTS",
                "must name at least one host",
            ));
        }

        let auth = match env.get("AUTH_MODE").as_deref() {
            Some("none") => AuthMode::None,
            Some("entra") => AuthMode::Entra {
                tenant_id: env.required("AUTH_TENANT_ID", "required when AUTH_MODE=entra")?,
                audiences: {
                    let list = env.list_or("AUTH_AUDIENCE", "")?;
                    if list.is_empty() {
                        return Err(ConfigError::new(
                            "AUTH_AUDIENCE",
                            "required when AUTH_MODE=entra",
                        ));
                    }
                    list
                },
                required_role: required_role(&env)?,
                openid_config_url: match env.get("AUTH_OPENID_CONFIG_URL") {
                    None => None,
                    Some(_) => Some(env.base_url("AUTH_OPENID_CONFIG_URL")?),
                },
                operator_role: operator_role(&env)?,
            },
            Some(_) => return Err(ConfigError::new("AUTH_MODE", "must be `entra` or `none`")),
            None => {
                return Err(ConfigError::new(
                    "AUTH_MODE",
                    "is required: `entra` (validate Entra ID tokens) or `none`",
                ));
            }
        };

        let event_sink = match (
            env.get("EVENT_SINK_USERNAME"),
            env.get("EVENT_SINK_PASSWORD"),
        ) {
            (Some(username), Some(password)) => Some(EventSinkCredentials {
                username,
                password: Secret::new(password),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "EVENT_SINK_PASSWORD",
                    "required when EVENT_SINK_USERNAME is set",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "EVENT_SINK_USERNAME",
                    "required when EVENT_SINK_PASSWORD is set",
                ));
            }
        };

        let genesys = GenesysSettings {
            api_base: match env.get("GENESYS_API_BASE") {
                None => Url::parse("https://api.cac1.pure.cloud").expect("valid default"),
                Some(_) => env.base_url("GENESYS_API_BASE")?,
            },
            allowed_divisions: env.list_or("GENESYS_ALLOWED_DIVISIONS", "")?,
        };

        let log_format = match env.string_or("LOG_FORMAT", "text")?.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(ConfigError::new("LOG_FORMAT", "must be `text` or `json`")),
        };

        let timers_enabled = env.boolean("TIMERS_ENABLED", true)?;
        let service_hours = crate::service_hours::ServiceHours::from_lookup(&|name| env.get(name))?;

        Ok(Self {
            port,
            pool,
            pexip,
            rooms,
            uui,
            auth,
            event_sink,
            genesys,
            log_format,
            timers_enabled,
            service_hours,
        })
    }
}

/// Settings only the HTTP service uses: commands that serve nothing (status, pool, reap, gc,
/// doctor) read them as unset, so `AUTH_MODE` is not required to run them.
pub const SERVING_ONLY_PREFIXES: &[&str] = &["AUTH_", "EVENT_SINK_", "GENESYS_"];

impl Settings {
    /// Every bad setting at once, each as [`Settings::from_lookup`] words it (the one source of
    /// the rules). After each error the setting is set aside (unset, or a placeholder that passes
    /// when it is required) and the rest is read again, until the settings read or nothing more
    /// can be learnt.
    pub fn from_lookup_all(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Vec<ConfigError>> {
        // name → replacement (None: read as unset).
        let mut set_aside: HashMap<String, Option<String>> = HashMap::new();
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut stood_in = std::collections::HashSet::new();
        loop {
            let read = Self::from_lookup(|name| match set_aside.get(name) {
                Some(replacement) => replacement.clone(),
                None => lookup(name),
            });
            let error = match read {
                Ok(settings) if errors.is_empty() => return Ok(settings),
                Ok(_) => return Err(errors),
                Err(error) => error,
            };
            if errors.len() >= 64 {
                return Err(errors);
            }
            if errors.iter().any(|known| known.setting == error.setting) {
                // Unset did not help: the setting is required. Stand in a value, once.
                let stand_in = placeholder(&error.setting, true);
                if stand_in.is_empty() || !stood_in.insert(error.setting.clone()) {
                    return Err(errors);
                }
                for (name, value) in stand_in {
                    set_aside.insert(name.to_owned(), value.map(str::to_owned));
                }
                continue;
            }
            let stand_in = placeholder(&error.setting, false);
            if stand_in.is_empty() {
                set_aside.insert(error.setting.clone(), None);
            }
            for (name, value) in stand_in {
                set_aside.insert(name.to_owned(), value.map(str::to_owned));
            }
            errors.push(error);
        }
    }

    /// For commands that serve nothing: [`SERVING_ONLY_PREFIXES`] read as unset, with
    /// `AUTH_MODE=none`, and every other error reported at once.
    pub fn for_commands(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Vec<ConfigError>> {
        Self::from_lookup_all(|name| {
            if name == "AUTH_MODE" {
                Some("none".to_owned())
            } else if SERVING_ONLY_PREFIXES.iter().any(|p| name.starts_with(p)) {
                None
            } else {
                lookup(name)
            }
        })
    }
}

/// What to set aside so that reading can go past a bad required setting: on the first error
/// for `setting` it is read as unset (its default); if it is required (`again`), these values,
/// which pass validation, stand in for it.
fn placeholder(setting: &str, again: bool) -> Vec<(&'static str, Option<&'static str>)> {
    const URL: Option<&str> = Some("https://placeholder.invalid");
    if !again {
        return match setting {
            // A connection that does not resolve: stand in Azurite's.
            s if s.starts_with("AzureWebJobsStorage") || s.contains("__") => vec![
                ("POOL_QUEUE_CONNECTION", None),
                ("AzureWebJobsStorage", Some("UseDevelopmentStorage=true")),
            ],
            _ => vec![],
        };
    }
    match setting {
        "AUTH_MODE" => vec![("AUTH_MODE", Some("none"))],
        "PEXIP_BASE_URL" => vec![("PEXIP_BASE_URL", URL)],
        "AUTH_OPENID_CONFIG_URL" => vec![("AUTH_OPENID_CONFIG_URL", URL)],
        "GENESYS_API_BASE" => vec![("GENESYS_API_BASE", URL)],
        "AUTH_TENANT_ID" | "AUTH_AUDIENCE" => vec![(
            if setting == "AUTH_TENANT_ID" {
                "AUTH_TENANT_ID"
            } else {
                "AUTH_AUDIENCE"
            },
            Some("placeholder"),
        )],
        // Any Pexip credential problem: stand in Basic credentials.
        "PEXIP_OAUTH_CLIENT_ID"
        | "PEXIP_OAUTH_PRIVATE_KEY"
        | "PEXIP_USERNAME"
        | "PEXIP_PASSWORD" => vec![
            ("PEXIP_OAUTH_CLIENT_ID", None),
            ("PEXIP_OAUTH_PRIVATE_KEY", None),
            ("PEXIP_USERNAME", Some("placeholder")),
            ("PEXIP_PASSWORD", Some("placeholder")),
        ],
        "EVENT_SINK_USERNAME" | "EVENT_SINK_PASSWORD" => {
            vec![("EVENT_SINK_USERNAME", None), ("EVENT_SINK_PASSWORD", None)]
        }
        _ => vec![],
    }
}

fn pexip_auth(env: &Env<'_>) -> Result<PexipAuth, ConfigError> {
    let client_id = env.get("PEXIP_OAUTH_CLIENT_ID");
    let key = env.get("PEXIP_OAUTH_PRIVATE_KEY");
    let username = env.get("PEXIP_USERNAME");
    let password = env.get("PEXIP_PASSWORD");
    match (client_id, key, username, password) {
        (Some(client_id), Some(key), _, _) => Ok(PexipAuth::OAuth {
            client_id,
            private_key_pem: crate::secret::parse_private_key(&key)
                .map_err(|rule| ConfigError::new("PEXIP_OAUTH_PRIVATE_KEY", rule))?,
        }),
        (Some(_), None, _, _) => Err(ConfigError::new(
            "PEXIP_OAUTH_PRIVATE_KEY",
            "required when PEXIP_OAUTH_CLIENT_ID is set",
        )),
        (None, Some(_), _, _) => Err(ConfigError::new(
            "PEXIP_OAUTH_CLIENT_ID",
            "required when PEXIP_OAUTH_PRIVATE_KEY is set",
        )),
        (None, None, Some(username), Some(password)) => Ok(PexipAuth::Basic {
            username,
            password: Secret::new(password),
        }),
        (None, None, Some(_), None) => Err(ConfigError::new(
            "PEXIP_PASSWORD",
            "required when PEXIP_USERNAME is set",
        )),
        (None, None, None, _) => Err(ConfigError::new(
            "PEXIP_OAUTH_CLIENT_ID",
            "Pexip credentials are required: PEXIP_OAUTH_CLIENT_ID and PEXIP_OAUTH_PRIVATE_KEY, \
             or PEXIP_USERNAME and PEXIP_PASSWORD",
        )),
    }
}

fn room_template(env: &Env<'_>) -> Result<Map<String, Value>, ConfigError> {
    let raw = env.string_or("ROOM_TEMPLATE", "{}")?;
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&raw) else {
        return Err(ConfigError::new("ROOM_TEMPLATE", "must be a JSON object"));
    };
    if let Some(key) = map
        .keys()
        .find(|k| RESERVED_ROOM_FIELDS.contains(&k.as_str()))
    {
        return Err(ConfigError::new(
            "ROOM_TEMPLATE",
            format!("may not set `{key}`: maxconf sets it on every room"),
        ));
    }
    Ok(map)
}

/// `AUTH_REQUIRED_ROLE` under `AUTH_MODE=entra`. Without a role any principal of the tenant that
/// holds a token for the audience gets in, so that must be asked for explicitly with
/// `AUTH_ALLOW_ANY_PRINCIPAL=true` (and then no role may be set: the two contradict).
fn required_role(env: &Env) -> Result<Option<String>, ConfigError> {
    let any = match env
        .get("AUTH_ALLOW_ANY_PRINCIPAL")
        .as_deref()
        .map(str::trim)
    {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ConfigError::new(
                "AUTH_ALLOW_ANY_PRINCIPAL",
                "must be `true` or `false`",
            ));
        }
    };
    match (env.get("AUTH_REQUIRED_ROLE"), any) {
        (Some(role), false) => Ok(Some(role.trim().to_owned())),
        (None, true) => Ok(None),
        (Some(_), true) => Err(ConfigError::new(
            "AUTH_ALLOW_ANY_PRINCIPAL",
            "must not be `true` when AUTH_REQUIRED_ROLE is set",
        )),
        (None, false) => Err(ConfigError::new(
            "AUTH_REQUIRED_ROLE",
            "required when AUTH_MODE=entra (the app role callers must hold); set \
             AUTH_ALLOW_ANY_PRINCIPAL=true instead to accept any principal of the tenant",
        )),
    }
}

/// `AUTH_OPERATOR_ROLE`: an app role value (no spaces, as Entra requires of role values),
/// distinct from `AUTH_REQUIRED_ROLE` so that a caller's token never opens the management routes.
fn operator_role(env: &Env) -> Result<Option<String>, ConfigError> {
    let Some(role) = env.get("AUTH_OPERATOR_ROLE") else {
        return Ok(None);
    };
    let role = role.trim().to_owned();
    if role.chars().any(char::is_whitespace) {
        return Err(ConfigError::new(
            "AUTH_OPERATOR_ROLE",
            "must be an app role value, without spaces",
        ));
    }
    if env.get("AUTH_REQUIRED_ROLE").map(|r| r.trim().to_owned()) == Some(role.clone()) {
        return Err(ConfigError::new(
            "AUTH_OPERATOR_ROLE",
            "must differ from AUTH_REQUIRED_ROLE (callers must not hold the operator role)",
        ));
    }
    Ok(Some(role))
}

/// Typed reads over a lookup function. Empty values count as unset, as in App Service.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, name: &str, rule: &str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::new(name, rule))
    }

    fn string_or(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        Ok(self.get(name).unwrap_or_else(|| default.to_owned()))
    }

    fn parse_opt<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse::<T>()
                    .map_err(|_| ConfigError::new(name, format!("must be {what}")))
            })
            .transpose()
    }

    fn ranged(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let value = self
            .parse_opt::<u64>(name, &format!("a whole number from {min} to {max}"))?
            .unwrap_or(default);
        if !(min..=max).contains(&value) {
            return Err(ConfigError::new(
                name,
                format!("must be a whole number from {min} to {max}"),
            ));
        }
        Ok(value)
    }

    /// `true` or `false` (any case); anything else is rejected rather than guessed.
    fn boolean(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self
            .get(name)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(ConfigError::new(name, "must be `true` or `false`")),
        }
    }

    fn list_or(&self, name: &str, default: &str) -> Result<Vec<String>, ConfigError> {
        Ok(self
            .string_or(name, default)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn base_url(&self, name: &str) -> Result<Url, ConfigError> {
        let raw = self.required(name, "is required")?;
        let url = Url::parse(raw.trim())
            .map_err(|_| ConfigError::new(name, "must be an absolute http(s) URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::new(name, "must be an absolute http(s) URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::new(
                name,
                "must not carry credentials in the URL",
            ));
        }
        Ok(url)
    }

    fn queue_name(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        let value = self.string_or(name, default)?;
        if !crate::pool::is_valid_queue_name(&value) {
            return Err(ConfigError::new(
                name,
                "must be a valid Azure queue name (3-63 lowercase letters, digits, single hyphens)",
            ));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<String, String> {
        [
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            ("PEXIP_BASE_URL", "https://pexip.example.org"),
            ("PEXIP_USERNAME", "admin"),
            ("PEXIP_PASSWORD", "s3cret-pexip"),
            ("AUTH_MODE", "none"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn load(vars: &HashMap<String, String>) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|k| vars.get(k).cloned())
    }

    fn error_for(overrides: &[(&str, &str)], removed: &[&str]) -> ConfigError {
        let mut vars = base();
        for key in removed {
            vars.remove(*key);
        }
        for (k, v) in overrides {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        load(&vars).expect_err("settings should be rejected")
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = load(&base()).unwrap();
        assert_eq!(s.pool.queue_name, "room-creation-queue");
        assert_eq!(s.pool.deletion_queue_name, "room-deletion-queue");
        assert_eq!(s.pool.target_size, 10);
        assert_eq!(s.pool.warmup, Duration::from_secs(90));
        assert_eq!(s.pool.empty_fallback, EmptyFallback::Create);
        assert_eq!(s.pool.gc_grace, Duration::from_secs(600));
        assert_eq!(s.pexip.timeout, Duration::from_secs(10));
        assert_eq!(s.pexip.max_concurrency, 5);
        assert_eq!(s.rooms.pin_length, 6);
        assert_eq!(s.rooms.name_prefix, "");
        assert!(s.rooms.template.is_empty());
        assert_eq!(s.rooms.max_age, Duration::from_secs(24 * 3600));
        assert_eq!(s.rooms.persistent_prefixes, ["test_", "vkiosk_"]);
        assert_eq!(s.uui.allowed_hosts, ["id", "idtest", "iddev"]);
        assert_eq!(s.uui.tag_template, DEFAULT_TAG_URL_TEMPLATE);
        assert_eq!(s.genesys.api_base.as_str(), "https://api.cac1.pure.cloud/");
        assert_eq!(s.log_format, LogFormat::Text);
        assert!(s.event_sink.is_none());
        assert!(s.port.is_none());
        assert!(s.timers_enabled);
    }

    #[test]
    fn timers_enabled_reads_true_and_false_only() {
        for (raw, expected) in [
            ("false", false),
            ("FALSE", false),
            ("true", true),
            (" True ", true),
        ] {
            let mut vars = base();
            vars.insert("TIMERS_ENABLED".into(), raw.into());
            assert_eq!(load(&vars).unwrap().timers_enabled, expected, "{raw}");
        }
    }

    /// The operator role is optional (management routes closed without it), a role value,
    /// and never the caller's role.
    #[test]
    fn the_operator_role_is_a_role_value_distinct_from_the_callers() {
        let with = |operator: &str| {
            let mut vars = base();
            for (k, v) in [
                ("AUTH_MODE", "entra"),
                ("AUTH_TENANT_ID", "t"),
                ("AUTH_AUDIENCE", "api://x"),
                ("AUTH_REQUIRED_ROLE", "Rooms.Manage"),
                ("AUTH_OPERATOR_ROLE", operator),
            ] {
                vars.insert(k.to_owned(), v.to_owned());
            }
            load(&vars)
        };
        let operator = |s: Settings| match s.auth {
            AuthMode::Entra { operator_role, .. } => operator_role,
            AuthMode::None => panic!("entra expected"),
        };
        assert_eq!(operator(with("").unwrap()), None);
        assert_eq!(
            operator(with(" Pool.Operate ").unwrap()).as_deref(),
            Some("Pool.Operate")
        );
        for bad in ["Rooms.Manage", "Pool Operate"] {
            let err = with(bad).unwrap_err();
            assert_eq!(err.setting, "AUTH_OPERATOR_ROLE", "{bad}");
        }
        assert!(
            with("Rooms.Manage")
                .unwrap_err()
                .to_string()
                .contains("must differ from AUTH_REQUIRED_ROLE")
        );
    }

    /// An empty role would let in any principal of the tenant holding a token for the
    /// audience: that takes an explicit `AUTH_ALLOW_ANY_PRINCIPAL=true`.
    #[test]
    fn entra_needs_a_role_or_an_explicit_any_principal() {
        let entra = [
            ("AUTH_MODE", "entra"),
            ("AUTH_TENANT_ID", "t"),
            ("AUTH_AUDIENCE", "api://x"),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut vars = base();
            for (k, v) in entra.iter().chain(extra) {
                vars.insert((*k).to_owned(), (*v).to_owned());
            }
            load(&vars)
        };
        let role = |s: Settings| match s.auth {
            AuthMode::Entra { required_role, .. } => required_role,
            AuthMode::None => panic!("entra expected"),
        };
        let err = with(&[]).unwrap_err();
        assert_eq!(err.setting, "AUTH_REQUIRED_ROLE");
        assert!(
            err.to_string().contains("AUTH_ALLOW_ANY_PRINCIPAL"),
            "{err}"
        );
        let err = with(&[("AUTH_REQUIRED_ROLE", " ")]).unwrap_err();
        assert_eq!(err.setting, "AUTH_REQUIRED_ROLE");
        let err = with(&[("AUTH_ALLOW_ANY_PRINCIPAL", "yes")]).unwrap_err();
        assert_eq!(err.setting, "AUTH_ALLOW_ANY_PRINCIPAL");
        let err = with(&[
            ("AUTH_REQUIRED_ROLE", "R"),
            ("AUTH_ALLOW_ANY_PRINCIPAL", "true"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "AUTH_ALLOW_ANY_PRINCIPAL");
        assert_eq!(
            role(with(&[("AUTH_REQUIRED_ROLE", "R")]).unwrap()).as_deref(),
            Some("R")
        );
        let any = with(&[("AUTH_ALLOW_ANY_PRINCIPAL", "true")]).unwrap();
        assert_eq!(role(any), None);
        let role_and_false = with(&[
            ("AUTH_REQUIRED_ROLE", "R"),
            ("AUTH_ALLOW_ANY_PRINCIPAL", "false"),
        ])
        .unwrap();
        assert_eq!(role(role_and_false).as_deref(), Some("R"));
    }

    #[test]
    fn each_bad_setting_is_named() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
        let cases: &[Case] = &[
            (&[], &["AUTH_MODE"], "AUTH_MODE"),
            (&[("AUTH_MODE", "maybe")], &[], "AUTH_MODE"),
            (&[("AUTH_MODE", "entra")], &[], "AUTH_TENANT_ID"),
            (
                &[("AUTH_MODE", "entra"), ("AUTH_TENANT_ID", "t")],
                &[],
                "AUTH_AUDIENCE",
            ),
            (&[], &["PEXIP_BASE_URL"], "PEXIP_BASE_URL"),
            (&[("PEXIP_BASE_URL", "not a url")], &[], "PEXIP_BASE_URL"),
            (&[("PEXIP_BASE_URL", "ftp://x")], &[], "PEXIP_BASE_URL"),
            (
                &[],
                &["PEXIP_USERNAME", "PEXIP_PASSWORD"],
                "PEXIP_OAUTH_CLIENT_ID",
            ),
            (&[], &["PEXIP_PASSWORD"], "PEXIP_PASSWORD"),
            (
                &[("PEXIP_OAUTH_CLIENT_ID", "c")],
                &[],
                "PEXIP_OAUTH_PRIVATE_KEY",
            ),
            (
                &[
                    ("PEXIP_OAUTH_CLIENT_ID", "c"),
                    ("PEXIP_OAUTH_PRIVATE_KEY", "garbage"),
                ],
                &[],
                "PEXIP_OAUTH_PRIVATE_KEY",
            ),
            (&[("POOL_TARGET_SIZE", "-1")], &[], "POOL_TARGET_SIZE"),
            (&[("POOL_TARGET_SIZE", "ten")], &[], "POOL_TARGET_SIZE"),
            (
                &[("POOL_EMPTY_FALLBACK", "wait")],
                &[],
                "POOL_EMPTY_FALLBACK",
            ),
            (&[("POOL_QUEUE_NAME", "Bad_Name")], &[], "POOL_QUEUE_NAME"),
            (&[("ROOM_PIN_LENGTH", "3")], &[], "ROOM_PIN_LENGTH"),
            (&[("ROOM_PIN_LENGTH", "21")], &[], "ROOM_PIN_LENGTH"),
            (&[("ROOM_TEMPLATE", "[1]")], &[], "ROOM_TEMPLATE"),
            (&[("ROOM_TEMPLATE", r#"{"pin":"1"}"#)], &[], "ROOM_TEMPLATE"),
            (&[("ROOM_NAME_PREFIX", "a/b")], &[], "ROOM_NAME_PREFIX"),
            (&[("ROOM_NAME_PREFIX", "test_x")], &[], "ROOM_NAME_PREFIX"),
            (&[("GC_GRACE_SECS", "604800")], &[], "GC_GRACE_SECS"),
            (&[("PEXIP_TIMEOUT_SECS", "0")], &[], "PEXIP_TIMEOUT_SECS"),
            (
                &[("PEXIP_MAX_CONCURRENCY", "0")],
                &[],
                "PEXIP_MAX_CONCURRENCY",
            ),
            (&[("PEXIP_CA_CERT", "nope")], &[], "PEXIP_CA_CERT"),
            (
                &[("TAG_URL_TEMPLATE", "https://x/")],
                &[],
                "TAG_URL_TEMPLATE",
            ),
            (&[("UUI_ALLOWED_HOSTS", " , ")], &[], "UUI_ALLOWED_HOSTS"),
            (&[("LOG_FORMAT", "xml")], &[], "LOG_FORMAT"),
            (&[("TIMERS_ENABLED", "0")], &[], "TIMERS_ENABLED"),
            (&[("TIMERS_ENABLED", "no")], &[], "TIMERS_ENABLED"),
            (
                &[("FUNCTIONS_CUSTOMHANDLER_PORT", "99999")],
                &[],
                "FUNCTIONS_CUSTOMHANDLER_PORT",
            ),
            (&[("EVENT_SINK_USERNAME", "u")], &[], "EVENT_SINK_PASSWORD"),
            (&[], &["AzureWebJobsStorage"], "AzureWebJobsStorage"),
            (&[("SERVICE_HOURS", "Mon 9-5")], &[], "SERVICE_HOURS"),
            (&[("SERVICE_TIMEZONE", "PST")], &[], "SERVICE_TIMEZONE"),
            (
                &[("SERVICE_CLOSED_DATES", "2026-13-01")],
                &[],
                "SERVICE_CLOSED_DATES",
            ),
            (&[("SERVICE_OVERRIDE", "off")], &[], "SERVICE_OVERRIDE"),
            (
                &[("MAXCONF_TEST_CLOCK_START", "tomorrow")],
                &[],
                "MAXCONF_TEST_CLOCK_START",
            ),
        ];
        for (overrides, removed, setting) in cases {
            let err = error_for(overrides, removed);
            assert_eq!(
                &err.setting, setting,
                "{overrides:?} {removed:?} gave {err}"
            );
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn every_bad_setting_is_reported_at_once() {
        let vars: HashMap<String, String> = [
            ("POOL_TARGET_SIZE", "ten"),
            ("POOL_EMPTY_FALLBACK", "wait"),
            ("ROOM_PIN_LENGTH", "2"),
            ("LOG_FORMAT", "xml"),
            ("EVENT_SINK_USERNAME", "u"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        // Nothing required is set either.
        let errors = Settings::from_lookup_all(|k| vars.get(k).cloned()).unwrap_err();
        let mut named: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        named.sort();
        assert_eq!(
            named,
            [
                "AUTH_MODE",
                "AzureWebJobsStorage",
                "EVENT_SINK_PASSWORD",
                "LOG_FORMAT",
                "PEXIP_BASE_URL",
                "PEXIP_OAUTH_CLIENT_ID",
                "POOL_EMPTY_FALLBACK",
                "POOL_TARGET_SIZE",
                "ROOM_PIN_LENGTH",
            ]
        );
        // The same rules as one at a time.
        let first = load(&vars).unwrap_err();
        assert!(errors.contains(&first));

        // A malformed required setting is reported once, as malformed (not also as missing).
        let mut vars = base();
        vars.insert("PEXIP_BASE_URL".into(), "pexip.example.org".into());
        let errors = Settings::from_lookup_all(|k| vars.get(k).cloned()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].rule, "must be an absolute http(s) URL");

        // Commands that serve nothing do not need the serving settings.
        let mut vars = base();
        vars.remove("AUTH_MODE");
        vars.insert("EVENT_SINK_USERNAME".into(), "u".into());
        assert!(Settings::for_commands(|k| vars.get(k).cloned()).is_ok());
        assert_eq!(
            Settings::from_lookup_all(|k| vars.get(k).cloned())
                .unwrap_err()
                .len(),
            2
        );
        assert!(Settings::from_lookup_all(|k| base().get(k).cloned()).is_ok());
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let mut vars = base();
        vars.insert("EVENT_SINK_USERNAME".into(), "pexip".into());
        vars.insert("EVENT_SINK_PASSWORD".into(), "sink-pass-123".into());
        let s = load(&vars).unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cret-pexip"), "{debug}");
        assert!(!debug.contains("sink-pass-123"), "{debug}");
        // The well-known Azurite key is a secret like any account key.
        assert!(!debug.contains("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsu"));
    }

    #[test]
    fn persistent_prefixes_match_by_prefix() {
        let s = load(&base()).unwrap();
        assert!(s.rooms.is_persistent("test_room"));
        assert!(s.rooms.is_persistent("vkiosk_1"));
        assert!(!s.rooms.is_persistent("Xtest_room"));
    }
}
