//! `uuiData` (SIP User-to-User data, hex) → the validated tag URL of a room.

use crate::config::UuiSettings;

/// Longest `uuiData` accepted before decoding: a valid one is far shorter.
const MAX_RAW_LEN: usize = 1024;
const MAX_VIDEO_CALL_ID: usize = 128;
const MAX_TAG_LEN: usize = 250;

/// Why a `uuiData` value was refused; `Display` is the problem `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UuiError {
    #[error("uuiData is required")]
    Missing,
    #[error("uuiData may be given only once")]
    Repeated,
    #[error("uuiData is longer than {MAX_RAW_LEN} characters")]
    TooLong,
    #[error("uuiData: the only parameter allowed after `;` is `encoding=hex`")]
    BadParameter,
    #[error("uuiData must be an even number of hexadecimal digits")]
    NotHex,
    #[error("uuiData must decode to UTF-8 text")]
    NotUtf8,
    #[error("uuiData must decode to `host&video_call_id`")]
    NoSeparator,
    #[error("uuiData host is not one of the allowed hosts")]
    HostNotAllowed,
    #[error("uuiData video_call_id must be 1 to 128 characters of [A-Za-z0-9_=+/-]")]
    BadVideoCallId,
    #[error("the tag URL built from uuiData is longer than 250 characters")]
    TagTooLong,
}

impl UuiError {
    /// A stable slug for the problem `type`.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::Missing => "uui-missing",
            Self::Repeated => "uui-repeated",
            Self::TooLong => "uui-too-long",
            Self::BadParameter => "uui-parameter",
            Self::NotHex => "uui-not-hex",
            Self::NotUtf8 => "uui-not-utf8",
            Self::NoSeparator => "uui-format",
            Self::HostNotAllowed => "uui-host",
            Self::BadVideoCallId => "uui-video-call-id",
            Self::TagTooLong => "uui-tag-too-long",
        }
    }
}

/// Decodes `uuiData` and fills in the tag URL template.
pub fn tag_from_uui(raw: &str, settings: &UuiSettings) -> Result<String, UuiError> {
    if raw.is_empty() {
        return Err(UuiError::Missing);
    }
    if raw.len() > MAX_RAW_LEN {
        return Err(UuiError::TooLong);
    }
    let hex_part = match raw.split_once(';') {
        None => raw,
        Some((hex, param)) if param.eq_ignore_ascii_case("encoding=hex") => hex,
        Some(_) => return Err(UuiError::BadParameter),
    };
    let bytes = hex::decode(hex_part).map_err(|_| UuiError::NotHex)?;
    if bytes.is_empty() {
        return Err(UuiError::NotHex);
    }
    let text = String::from_utf8(bytes).map_err(|_| UuiError::NotUtf8)?;
    let (host, video_call_id) = text.split_once('&').ok_or(UuiError::NoSeparator)?;
    if !settings.allowed_hosts.iter().any(|h| h == host) {
        return Err(UuiError::HostNotAllowed);
    }
    let id_ok = (1..=MAX_VIDEO_CALL_ID).contains(&video_call_id.len())
        && video_call_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_=+/-".contains(&b));
    if !id_ok {
        return Err(UuiError::BadVideoCallId);
    }
    let tag = settings
        .tag_template
        .replace("{host}", host)
        .replace("{video_call_id}", video_call_id);
    if tag.chars().count() > MAX_TAG_LEN {
        return Err(UuiError::TagTooLong);
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_TAG_URL_TEMPLATE;

    fn settings() -> UuiSettings {
        UuiSettings {
            allowed_hosts: vec!["id".into(), "idtest".into(), "iddev".into()],
            tag_template: DEFAULT_TAG_URL_TEMPLATE.into(),
        }
    }

    fn enc(text: &str) -> String {
        hex::encode(text)
    }

    #[test]
    fn decodes_the_spec_example() {
        let tag = tag_from_uui(
            "6964264d54497a4e4455324c4463324e54517a4d67;encoding=hex",
            &settings(),
        );
        assert_eq!(
            tag.unwrap(),
            "https://id.gov.bc.ca/idcheck/protected/video/MTIzNDU2LDc2NTQzMg"
        );
    }

    #[test]
    fn accepts_either_case_and_no_suffix() {
        let upper = enc("idtest&abc").to_uppercase();
        assert_eq!(
            tag_from_uui(&format!("{upper};ENCODING=HEX"), &settings()).unwrap(),
            "https://idtest.gov.bc.ca/idcheck/protected/video/abc"
        );
        assert!(tag_from_uui(&enc("iddev&a_b=c+d/e-f"), &settings()).is_ok());
    }

    #[test]
    fn rejects_each_rule() {
        let s = settings();
        let long_id = "a".repeat(129);
        let cases = [
            ("", UuiError::Missing),
            (&"ab".repeat(600)[..], UuiError::TooLong),
            (
                &format!("{};encoding=base64", enc("id&a"))[..],
                UuiError::BadParameter,
            ),
            (
                &format!("{};foo=bar", enc("id&a"))[..],
                UuiError::BadParameter,
            ),
            (
                &format!("{};encoding=hex;x=y", enc("id&a"))[..],
                UuiError::BadParameter,
            ),
            ("abc", UuiError::NotHex),
            ("zz", UuiError::NotHex),
            (";encoding=hex", UuiError::NotHex),
            ("ff", UuiError::NotUtf8),
            (&enc("idabc")[..], UuiError::NoSeparator),
            (&enc("evil&abc")[..], UuiError::HostNotAllowed),
            (&enc("ID&abc")[..], UuiError::HostNotAllowed),
            (&enc("id&")[..], UuiError::BadVideoCallId),
            (&enc("id&a b")[..], UuiError::BadVideoCallId),
            (&enc("id&a&b")[..], UuiError::BadVideoCallId),
            (&enc("id&../x")[..], UuiError::BadVideoCallId),
            (&enc(&format!("id&{long_id}"))[..], UuiError::BadVideoCallId),
        ];
        for (input, expected) in cases {
            assert_eq!(tag_from_uui(input, &s), Err(expected), "{input}");
        }
        assert!(tag_from_uui(&enc(&format!("id&{}", "a".repeat(128))), &s).is_ok());
    }

    #[test]
    fn tag_length_is_bounded() {
        let s = UuiSettings {
            allowed_hosts: vec!["id".into()],
            tag_template: format!("https://{}/{{video_call_id}}", "h".repeat(130)),
        };
        let id = "a".repeat(128);
        assert_eq!(
            tag_from_uui(&enc(&format!("id&{id}")), &s),
            Err(UuiError::TagTooLong)
        );
    }
}
