//! `PEXIP_CA_CERT`: a Management Node with a certificate from a private CA is trusted only
//! when that CA is configured; without it the failure is clean (503, a clear error, no panic).

mod common;

use std::sync::Arc;

use common::app::{SPEC_UUI, TestApp, problem};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use maxconf::config::{PexipAuth, PexipSettings};
use maxconf::pexip::{PexipClient, PexipError};
use maxconf::secret::Secret;
use maxconf::sim::{SimConfig, Simulator};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private CA and the simulator behind TLS with a certificate it issued for 127.0.0.1.
async fn private_ca_pexip(sim: Simulator) -> (String, String) {
    maxconf::tls::ensure_crypto_provider();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = sim.router();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                // A refused handshake (untrusted CA on the client side) just ends here.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                }
            });
        }
    });
    (format!("https://127.0.0.1:{port}"), ca.pem())
}

fn settings(base: &str, ca: Option<String>) -> PexipSettings {
    PexipSettings {
        base_url: base.parse().unwrap(),
        auth: PexipAuth::Basic {
            username: "admin".into(),
            password: Secret::new("pw"),
        },
        ca_cert_pem: ca,
        timeout: std::time::Duration::from_secs(2),
        max_concurrency: 2,
    }
}

#[tokio::test]
async fn the_private_ca_is_trusted_only_when_configured() {
    let sim = Simulator::new(SimConfig::default());
    let id = sim.insert_room(serde_json::json!({"name": "r1"})).unwrap();
    let (base, ca_pem) = private_ca_pexip(sim).await;

    let without = PexipClient::new(&settings(&base, None)).unwrap();
    let err = without.get_conference(id).await.unwrap_err();
    assert!(
        matches!(&err, PexipError::Unavailable(m) if m.contains("PEXIP_CA_CERT")),
        "{err:?}"
    );

    let with = PexipClient::new(&settings(&base, Some(ca_pem))).unwrap();
    assert_eq!(with.get_conference(id).await.unwrap().unwrap().name, "r1");
}

#[tokio::test]
async fn the_service_answers_503_without_the_ca_and_200_with_it() {
    let sim = Simulator::new(SimConfig::default());
    let (base, ca_pem) = private_ca_pexip(sim).await;

    let app = TestApp::spawn_with(&base, &[]).await;
    let response = app.create(SPEC_UUI).await;
    let body = problem(response, 503).await;
    assert_eq!(body["detail"], "Pexip is unavailable");

    let app = TestApp::spawn_with(&base, &[("PEXIP_CA_CERT", ca_pem.as_str())]).await;
    assert_eq!(app.create(SPEC_UUI).await.status(), 200);
}
