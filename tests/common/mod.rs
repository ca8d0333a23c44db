//! Shared test support; each test binary uses a different part of it.
#![allow(dead_code)]

pub mod app;
pub mod azurite;
pub mod entra;
pub mod npm;
pub mod process;
