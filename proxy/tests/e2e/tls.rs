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
async fn a_bad_certificate_keeps_its_previous_one_and_the_others_apply() {
    let s = EchoServer::start("s").await;
    let ca = Ca::new();
    let proxy = Proxy::start(Some(tls_snapshot(1, &ca, &["a.example.com"], &s))).await;
    let https = proxy.https.unwrap();
    // v2 adds b's certificate and breaks a's (a key of another certificate).
    let mut bad = tls_snapshot(2, &ca, &["a.example.com", "b.example.com"], &s);
    std::sync::Arc::make_mut(&mut bad.certificates[0]).key_pem = ca.leaf(&["x"]).1;
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
        if text.contains("hookway_snapshot_reloads_total{result=\"partial\"} 1") {
            assert!(text.contains("hookway_snapshot_failed_objects 1"), "{text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never applied partially:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(proxy.version(), Some(2), "the rest of v2 is live");
    let c = tls_client(&ca.pem, &["a.example.com", "b.example.com"], https);
    for host in ["a.example.com", "b.example.com"] {
        let url = format!("https://{host}:{}/", https.port());
        assert_eq!(
            c.get(&url).send().await.unwrap().status(),
            200,
            "{host}: a keeps its previous certificate, b gets its new one"
        );
    }
    let config: serde_json::Value = client()
        .get(format!("http://{}/config", proxy.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["failed"][0]["kind"], "Secret", "{config}");
    assert!(
        config["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{config}"
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
