//! TLS set-up shared by every HTTP client (Pexip, Azure Storage, Entra, Genesys).

/// reqwest is built without a default crypto provider (no aws-lc, no OpenSSL): install ring's
/// once per process. Safe to call any number of times.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
