//! TLS: certificates by SNI, unknown SNI, certificate swap, HTTP/2 over TLS.

use crate::support::*;

fn tls_snapshot(
    version: u64,
    ca: &Ca,
    hosts: &[&str],
    s: &EchoServer,
) -> hookway_crds::snapshot::Snapshot {
    let certs = hosts
        .iter()
        .map(|h| ca.entry(&format!("cert-{h}"), &[h]))
        .collect();
    snapshot(
        version,
        vec![route("r", &[], vec![], "svc")],
        vec![upstream("svc", &[s.addr])],
        certs,
    )
}

#[tokio::test]
async fn certificates_by_sni_and_http2() {
    let s = EchoServer::start("s").await;
    let ca = Ca::new();
    let proxy = Proxy::start(Some(tls_snapshot(
        1,
        &ca,
        &["a.example.com", "b.example.com"],
        &s,
    )))
    .await;
    let https = proxy.https.unwrap();
    let c = tls_client(&ca.pem, &["a.example.com", "b.example.com"], https);
    for host in ["a.example.com", "b.example.com"] {
        let resp = c
            .get(format!("https://{host}:{}/x", https.port()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        assert_eq!(resp.version(), http::Version::HTTP_2, "ALPN h2");
        let v = json(resp).await;
        assert_eq!(v["headers"]["x-forwarded-proto"], "https");
        assert_eq!(v["headers"]["host"], format!("{host}:{}", https.port()));
    }
}

#[tokio::test]
async fn unknown_sni_fails_without_default_and_gets_default_with_one() {
    let s = EchoServer::start("s").await;
    let ca = Ca::new();
    let snap = tls_snapshot(1, &ca, &["a.example.com"], &s);
    let proxy = Proxy::start(Some(snap.clone())).await;
    let https = proxy.https.unwrap();
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("c.example.com", https)
        .build()
        .unwrap();
    let url = format!("https://c.example.com:{}/", https.port());
    assert!(
        insecure.get(&url).send().await.is_err(),
        "no certificate: handshake fails"
    );

    let mut config = test_config();
    let (cert, key) = ca.leaf(&["default.invalid"]);
    config.default_cert = Some((cert.into_bytes(), key.into_bytes()));
    let proxy = Proxy::start_with(Some(snap), config).await;
    let https = proxy.https.unwrap();
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("c.example.com", https)
        .build()
        .unwrap();
    let url = format!("https://c.example.com:{}/", https.port());
    assert_eq!(insecure.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn certificates_change_with_the_snapshot() {
    let s = EchoServer::start("s").await;
    let ca = Ca::new();
    let proxy = Proxy::start(Some(tls_snapshot(1, &ca, &["a.example.com"], &s))).await;
    let https = proxy.https.unwrap();
    let c = tls_client(&ca.pem, &["a.example.com", "b.example.com"], https);
    let url_b = format!("https://b.example.com:{}/", https.port());
    assert!(c.get(&url_b).send().await.is_err());
    proxy
        .apply(tls_snapshot(
            2,
            &ca,
            &["a.example.com", "b.example.com"],
            &s,
        ))
        .await;
    let c = tls_client(&ca.pem, &["a.example.com", "b.example.com"], https);
    assert_eq!(c.get(&url_b).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_bad_certificate_rejects_the_snapshot_and_keeps_the_last_good() {
    let s = EchoServer::start("s").await;
    let ca = Ca::new();
    let proxy = Proxy::start(Some(tls_snapshot(1, &ca, &["a.example.com"], &s))).await;
    let mut bad = tls_snapshot(2, &ca, &["a.example.com"], &s);
    bad.certificates[0].key_pem = ca.leaf(&["x"]).1; // a key of another certificate
    let bad = bad.seal();
    proxy.tx.send_replace(Some(std::sync::Arc::new(bad)));
    let metrics_url = format!("http://{}/metrics", proxy.admin);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = client()
            .get(&metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("hookway_snapshot_reloads_total{result=\"rejected\"} 1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never rejected:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(proxy.version(), Some(1));
    assert_eq!(
        client().get(proxy.url("/")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn h2c_with_prior_knowledge() {
    let s = EchoServer::start("s").await;
    let proxy = Proxy::start(Some(simple(1, &[s.addr]))).await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = c.get(proxy.url("/h2c")).send().await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(json(resp).await["path"], "/h2c");
}
