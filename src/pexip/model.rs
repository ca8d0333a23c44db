//! Pexip's list envelope. The conference itself is [`crate::conference`], a domain type the
//! adapter reads into.

use serde::Deserialize;
use serde_json::Value;

/// A page of a list (`meta.next` is a relative path or null).
#[derive(Debug, Deserialize)]
pub struct Page {
    pub meta: PageMeta,
    pub objects: Vec<Value>,
}

#[derive(Debug, Deserialize)]
pub struct PageMeta {
    pub next: Option<String>,
}
