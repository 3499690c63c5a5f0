//! TLS for the HTTP API (rustls, with ring): the agent serves HTTPS when given
//! `--http-tls-cert` and `--http-tls-key` (PEM), and the client commands speak
//! HTTPS trusting the CA in `--http-ca` (PEM) alone.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;

use crate::error::AgentError;

/// A PEM file's bytes; the error names the file and what it was for.
fn read(path: &Path, what: &str) -> Result<Vec<u8>, AgentError> {
    std::fs::read(path).map_err(|error| {
        AgentError::Tls(format!(
            "cannot read the {what} file {}: {error}",
            path.display()
        ))
    })
}

/// The server side, from a certificate chain and its private key.
pub(crate) async fn server_config(cert: &Path, key: &Path) -> Result<RustlsConfig, AgentError> {
    let (chain, private) = (read(cert, "TLS certificate")?, read(key, "TLS key")?);
    RustlsConfig::from_pem(chain, private).await.map_err(|error| {
        AgentError::Tls(format!(
            "cannot use {} and {} as the HTTP API's certificate and key (PEM, the key matching the certificate): {error}",
            cert.display(),
            key.display()
        ))
    })
}

/// Serves `app` over TLS on `listener` until the process ends.
pub(crate) async fn serve(
    listener: TcpListener,
    config: RustlsConfig,
    app: IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
) -> io::Result<()> {
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .serve(app)
        .await
}

/// The client side: trust the certificates in `ca` and nothing else.
pub(crate) fn client_config(ca: &Path) -> Result<ureq::tls::TlsConfig, AgentError> {
    let pem = read(ca, "CA")?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(error) => {
                return Err(AgentError::Tls(format!(
                    "the CA file {} is not PEM: {error}",
                    ca.display()
                )));
            }
        }
    }
    if certs.is_empty() {
        return Err(AgentError::Tls(format!(
            "the CA file {} holds no certificate (expected PEM `BEGIN CERTIFICATE`)",
            ca.display()
        )));
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build())
}
