use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::StatusCode;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::plugin::Consumer;
use crate::plugins::testing::{self, body_string, ctx, parts, snapshot_with_secret};
use hookway_crds::snapshot::{SecretEntry, Snapshot};

const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("testdata/ec_private.pem");
const EC_PUBLIC: &str = include_str!("testdata/ec_public.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn snapshot(secrets: &[(&str, &[(&str, &str)])]) -> Snapshot {
    let mut secrets: Vec<Arc<SecretEntry>> = secrets
        .iter()
        .map(|(name, data)| snapshot_with_secret(name, data).secrets.remove(0))
        .collect();
    secrets.sort_by(|a, b| a.key.cmp(&b.key));
    Snapshot {
        secrets,
        ..Snapshot::default()
    }
}

fn auth(config: serde_json::Value, snap: &Snapshot) -> Arc<dyn Plugin> {
    testing::build_with("auth", config, snap).expect("auth builds")
}

/// Runs the request hook: Ok(consumer, request after the hook) or Err(status, response).
async fn run(
    plugin: &dyn Plugin,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> Result<(Consumer, http::request::Parts), (StatusCode, http::HeaderMap, String)> {
    let mut req = parts(method, uri, headers);
    let mut cx = ctx("1.2.3.4:5");
    match testing::request(plugin, &mut req, &mut cx).await {
        None => Ok(((*cx.consumer.expect("consumer set")).clone(), req)),
        Some(resp) => {
            let (status, h) = (resp.status(), resp.headers().clone());
            Err((status, h, body_string(resp).await))
        }
    }
}

fn status<T>(r: Result<T, (StatusCode, http::HeaderMap, String)>) -> u16 {
    match r {
        Ok(_) => 200,
        Err((s, _, _)) => s.as_u16(),
    }
}

fn apikey_setup() -> (Arc<dyn Plugin>, Snapshot) {
    let snap = snapshot(&[(
        "keys",
        &[
            ("alice", "key-a"),
            ("alice.labels", "team=red, tier=gold"),
            ("old", "key-old"),
            ("old.expire", "1000"),
        ],
    )]);
    let plugin = auth(
        json!({"credentials": [{"type": "apikey", "secret": "keys"}], "hide_credentials": true}),
        &snap,
    );
    (plugin, snap)
}

#[tokio::test]
async fn apikey_from_header_or_query_sets_consumer_and_is_hidden() {
    let (plugin, _) = apikey_setup();
    let (consumer, req) = run(&*plugin, "GET", "/x", &[("authorization", "key-a")])
        .await
        .unwrap();
    assert_eq!(consumer.id, "alice");
    assert_eq!(consumer.labels["tier"], "gold");
    assert!(req.headers.get("authorization").is_none(), "hidden");

    let (consumer, req) = run(&*plugin, "GET", "/x?a=1&apikey=key-a", &[])
        .await
        .unwrap();
    assert_eq!(consumer.id, "alice");
    assert_eq!(req.uri, "/x?a=1");
    assert!(
        run(&*plugin, "GET", "/", &[("authorization", "Bearer key-a")])
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn credentials_stay_unless_hidden() {
    let snap = snapshot(&[("keys", &[("alice", "key-a")])]);
    let plugin = auth(
        json!({"credentials": [{"type": "apikey", "secret": "keys"}]}),
        &snap,
    );
    let (_, req) = run(&*plugin, "GET", "/?apikey=key-a", &[]).await.unwrap();
    assert_eq!(req.uri, "/?apikey=key-a");
}

#[tokio::test]
async fn missing_wrong_and_expired_are_401_with_challenge() {
    let (plugin, _) = apikey_setup();
    let (s, h, body) = run(&*plugin, "GET", "/", &[]).await.unwrap_err();
    assert_eq!(s, 401);
    assert_eq!(body, format!("{UNAUTHORIZED}\n"));
    assert_eq!(h[header::WWW_AUTHENTICATE], "ApiKey realm=\"hookway\"");
    assert_eq!(
        status(run(&*plugin, "GET", "/", &[("authorization", "nope")]).await),
        401
    );
    assert_eq!(
        status(run(&*plugin, "GET", "/", &[("authorization", "key-old")]).await),
        401
    );
}

#[tokio::test]
async fn required_labels_give_403() {
    let snap = snapshot(&[(
        "keys",
        &[
            ("alice", "key-a"),
            ("alice.labels", "team=red"),
            ("bob", "key-b"),
        ],
    )]);
    let plugin = auth(
        json!({"credentials": [{"type": "apikey", "secret": "keys"}],
               "required_labels": {"team": "red"}, "error_type": "json"}),
        &snap,
    );
    assert!(run(&*plugin, "GET", "/", &[("authorization", "key-a")])
        .await
        .is_ok());
    let (s, _, body) = run(&*plugin, "GET", "/", &[("authorization", "key-b")])
        .await
        .unwrap_err();
    assert_eq!(s, 403);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({"message": FORBIDDEN, "status_code": 403}));
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn sources_are_tried_in_order() {
    let snap = snapshot(&[
        ("keys", &[("svc", "key-s")]),
        ("users", &[("carol", "s3cret")]),
    ]);
    let plugin = auth(
        json!({"credentials": [{"type": "apikey", "secret": "keys"},
                               {"type": "basic", "secret": "users"}],
               "hide_credentials": true, "realm": "shop"}),
        &snap,
    );
    // The apikey source refuses the Basic header as a key; basic then accepts it.
    let (consumer, req) = run(
        &*plugin,
        "GET",
        "/",
        &[("authorization", &basic("carol", "s3cret"))],
    )
    .await
    .unwrap();
    assert_eq!(consumer.id, "carol");
    assert!(req.headers.get("authorization").is_none());
    let (s, h, _) = run(
        &*plugin,
        "GET",
        "/",
        &[("authorization", &basic("carol", "wrong"))],
    )
    .await
    .unwrap_err();
    assert_eq!(s, 401);
    let challenges: Vec<_> = h.get_all(header::WWW_AUTHENTICATE).iter().collect();
    assert_eq!(
        challenges,
        ["ApiKey realm=\"shop\"", "Basic realm=\"shop\""]
    );
    assert_eq!(
        status(
            run(
                &*plugin,
                "GET",
                "/",
                &[("authorization", &basic("dave", "s3cret"))]
            )
            .await
        ),
        401
    );
    assert_eq!(
        status(run(&*plugin, "GET", "/", &[("authorization", "Basic !!!")]).await),
        401
    );
}

fn token(
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    claims: serde_json::Value,
    key: &EncodingKey,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, &claims, key).unwrap()
}

#[tokio::test]
async fn jwt_hs256_with_kid_and_claim_checks() {
    let snap = snapshot(&[(
        "jwt-keys",
        &[
            ("k1", "secret-one"),
            ("k2", "secret-two"),
            ("k2.labels", "role=admin"),
        ],
    )]);
    let plugin = auth(
        json!({"credentials": [{"type": "jwt", "secret": "jwt-keys", "claims_to_verify": ["exp", "nbf"],
                                "issuer": ["https://issuer"], "audience": ["api"]}],
               "hide_credentials": true}),
        &snap,
    );
    let key2 = EncodingKey::from_secret(b"secret-two").expect("an HMAC key");
    let good = json!({"exp": now() + 60, "nbf": now() - 10, "iss": "https://issuer", "aud": "api"});
    let t = token(
        jsonwebtoken::Algorithm::HS256,
        Some("k2"),
        good.clone(),
        &key2,
    );
    let (consumer, req) = run(
        &*plugin,
        "GET",
        "/",
        &[("authorization", &format!("Bearer {t}"))],
    )
    .await
    .unwrap();
    assert_eq!(consumer.id, "k2");
    assert_eq!(consumer.labels["role"], "admin");
    assert!(req.headers.get("authorization").is_none());
    // Without kid every key is tried.
    let t = token(jsonwebtoken::Algorithm::HS256, None, good.clone(), &key2);
    assert_eq!(
        run(&*plugin, "GET", &format!("/?jwt_token={t}"), &[])
            .await
            .unwrap()
            .0
            .id,
        "k2"
    );
    // A kid naming another key fails.
    let t = token(
        jsonwebtoken::Algorithm::HS256,
        Some("k1"),
        good.clone(),
        &key2,
    );
    assert_eq!(
        status(run(&*plugin, "GET", &format!("/?jwt_token={t}"), &[]).await),
        401
    );
    let bad_cases = [
        json!({"exp": now() - 10, "nbf": now() - 10, "iss": "https://issuer", "aud": "api"}),
        json!({"exp": now() + 60, "nbf": now() + 100, "iss": "https://issuer", "aud": "api"}),
        json!({"exp": now() + 60, "nbf": now() - 10, "iss": "https://other", "aud": "api"}),
        json!({"exp": now() + 60, "nbf": now() - 10, "iss": "https://issuer", "aud": "web"}),
        json!({"nbf": now() - 10, "iss": "https://issuer", "aud": "api"}),
    ];
    for claims in bad_cases {
        let t = token(
            jsonwebtoken::Algorithm::HS256,
            Some("k2"),
            claims.clone(),
            &key2,
        );
        let r = run(
            &*plugin,
            "GET",
            "/",
            &[("authorization", &format!("Bearer {t}"))],
        )
        .await;
        assert_eq!(status(r), 401, "{claims}");
    }
    let (_, h, _) = run(&*plugin, "GET", "/", &[("authorization", "Bearer x.y.z")])
        .await
        .unwrap_err();
    assert_eq!(h[header::WWW_AUTHENTICATE], "Bearer realm=\"hookway\"");
}

#[tokio::test]
async fn jwt_rs256_from_query_and_es256_from_cookie() {
    let snap = snapshot(&[
        ("rsa", &[("issuer-a", RSA_PUBLIC)]),
        ("ec", &[("issuer-b", EC_PUBLIC)]),
    ]);
    let plugin = auth(
        json!({"credentials": [
            {"type": "jwt", "secret": "rsa", "algorithm": "RS256"},
            {"type": "jwt", "secret": "ec", "algorithm": "ES256", "cookie": "session", "query": null}],
            "hide_credentials": true}),
        &snap,
    );
    let claims = json!({"exp": now() + 60});
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let t = token(
        jsonwebtoken::Algorithm::RS256,
        Some("issuer-a"),
        claims.clone(),
        &rsa,
    );
    let (consumer, req) = run(&*plugin, "GET", &format!("/p?jwt_token={t}&x=1"), &[])
        .await
        .unwrap();
    assert_eq!(consumer.id, "issuer-a");
    assert_eq!(req.uri, "/p?x=1");

    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let t = token(jsonwebtoken::Algorithm::ES256, None, claims.clone(), &ec);
    let cookie = format!("theme=dark; session={t}");
    let (consumer, req) = run(&*plugin, "GET", "/", &[("cookie", &cookie)])
        .await
        .unwrap();
    assert_eq!(consumer.id, "issuer-b");
    assert_eq!(req.headers["cookie"], "theme=dark");
    // An HS256 token signed with the public key text is not accepted (algorithm confusion).
    let t = token(
        jsonwebtoken::Algorithm::HS256,
        Some("issuer-a"),
        claims,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()).expect("an HMAC key"),
    );
    assert_eq!(
        status(run(&*plugin, "GET", &format!("/?jwt_token={t}"), &[]).await),
        401
    );
}

fn aksk_request<'p>(
    plugin: &'p dyn Plugin,
    sk: &[u8],
    ak: &str,
    date: &str,
    tamper: bool,
) -> impl std::future::Future<Output = u16> + 'p {
    let mut req = parts(
        "POST",
        "/orders?b=2&a=1",
        &[
            ("host", "api.example.com"),
            (aksk::DATE_HEADER, date),
            ("x-extra", " v "),
        ],
    );
    let signed = "host;x-gateway-date;x-extra";
    let canonical = aksk::canonical_request(&req, signed).unwrap();
    assert_eq!(
        canonical,
        format!("POST\n/orders\na=1&b=2\nhost:api.example.com\nx-gateway-date:{date}\nx-extra:v\n{signed}")
    );
    let sig = aksk::sign(sk, date, &canonical);
    let value = format!("HMAC-SHA256 Access={ak}, SignedHeaders={signed}, Signature={sig}");
    req.headers.insert("authorization", value.parse().unwrap());
    if tamper {
        req.uri = "/orders?b=3&a=1".parse().unwrap();
    }
    async move {
        let mut cx = ctx("1.2.3.4:5");
        match testing::request(plugin, &mut req, &mut cx).await {
            None => 200,
            Some(r) => r.status().as_u16(),
        }
    }
}

fn gateway_date(secs: u64) -> String {
    // Inverse of aksk::parse_date via a tiny civil-from-days conversion.
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    let s = format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    assert_eq!(aksk::parse_date(&s), Some(secs));
    s
}

#[tokio::test]
async fn aksk_signatures() {
    let snap = snapshot(&[("pairs", &[("AK1", "sk-one")])]);
    let plugin = auth(
        json!({"credentials": [{"type": "aksk", "secret": "pairs", "clock_skew_seconds": 60}]}),
        &snap,
    );
    let fresh = gateway_date(now());
    assert_eq!(
        aksk_request(&*plugin, b"sk-one", "AK1", &fresh, false).await,
        200
    );
    assert_eq!(
        aksk_request(&*plugin, b"sk-one", "AK1", &fresh, true).await,
        401,
        "tampered"
    );
    assert_eq!(
        aksk_request(&*plugin, b"sk-two", "AK1", &fresh, false).await,
        401,
        "wrong key"
    );
    assert_eq!(
        aksk_request(&*plugin, b"sk-one", "AK9", &fresh, false).await,
        401,
        "unknown ak"
    );
    let stale = gateway_date(now() - 600);
    assert_eq!(
        aksk_request(&*plugin, b"sk-one", "AK1", &stale, false).await,
        401,
        "skew"
    );
    // The date must be signed.
    let date = fresh.clone();
    let mut req = parts("GET", "/", &[(aksk::DATE_HEADER, date.as_str())]);
    let canonical = aksk::canonical_request(&req, "host").unwrap_or_default();
    let sig = aksk::sign(b"sk-one", &date, &canonical);
    let value = format!("HMAC-SHA256 Access=AK1, SignedHeaders=host, Signature={sig}");
    req.headers.insert("authorization", value.parse().unwrap());
    assert!(testing::request(&*plugin, &mut req, &mut ctx("1.2.3.4:5"))
        .await
        .is_some());
}

#[test]
fn build_fails_on_missing_or_bad_secret() {
    let err = testing::build_with(
        "auth",
        json!({"credentials": [{"type": "apikey", "secret": "nope"}]}),
        &Snapshot::default(),
    )
    .err()
    .unwrap();
    // A proxy never resolves a name itself: without the compiler's binding there is no Secret.
    assert!(
        err.contains("\"nope\" was not resolved by the compiler"),
        "{err}"
    );
    let snap = snapshot(&[("rsa", &[("k", "not a pem")])]);
    let err = testing::build_with(
        "auth",
        json!({"credentials": [{"type": "jwt", "secret": "rsa", "algorithm": "RS256"}]}),
        &snap,
    )
    .err()
    .unwrap();
    assert!(
        err.contains("credentials[0]") && err.contains("\"k\""),
        "{err}"
    );
}

#[test]
fn config_validation() {
    let reg = crate::plugins::builtin();
    let check = |v: serde_json::Value| reg.catalogue().validate("auth", &v);
    let v = check(json!({"credentials": [
        {"type": "apikey", "secret": "b"}, {"type": "basic", "secret": "a"},
        {"type": "jwt", "secret": "b", "algorithm": "RS512", "cookie": "c"},
        {"type": "aksk", "secret": "c"}]}))
    .unwrap();
    assert_eq!(v.secret_refs, ["a", "b", "c"]);
    assert!(check(json!({"credentials": []}))
        .unwrap_err()
        .contains("must not be empty"));
    assert!(
        check(json!({"credentials": [{"type": "jwt", "secret": "a", "algorithm": "ES512"}]}))
            .unwrap_err()
            .contains("ES512")
    );
    assert!(
        check(json!({"credentials": [{"type": "basic", "secret": "a", "password": "x"}]}))
            .unwrap_err()
            .contains("password")
    );
    assert!(
        check(json!({"credentials": [{"type": "oauth", "secret": "a"}]}))
            .unwrap_err()
            .contains("oauth")
    );
    assert!(
        check(json!({"credentials": [{"type": "basic", "secret": "a"}], "realm": "a\"b"}))
            .unwrap_err()
            .contains("realm")
    );
}

/// The compiler runs the proxy's own credential loading on the resolved Secrets: what a proxy
/// would refuse at build time is refused at compile time, with the same message.
#[test]
fn compiler_checks_credential_secrets_as_the_proxy_loads_them() {
    let reg = crate::plugins::builtin();
    let secret = |name: &str, data: &[(&str, &str)]| {
        (
            name.to_string(),
            SecretEntry::clone(&snapshot_with_secret(name, data).secrets[0]),
        )
    };
    let jwt =
        |alg: &str| json!({"credentials": [{"type": "jwt", "secret": "k", "algorithm": alg}]});
    let keys = json!({"credentials": [{"type": "apikey", "secret": "k"}]});
    let two_sources = json!({"credentials": [
        {"type": "apikey", "secret": "k"}, {"type": "apikey", "secret": "k2", "header": "x-key"}]});
    /// (case, config, Secrets by name, expected error part).
    type Case<'a> = (
        &'a str,
        serde_json::Value,
        Vec<(&'a str, &'a [(&'a str, &'a str)])>,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "rsa key",
            jwt("RS256"),
            vec![("k", &[("kid", RSA_PUBLIC)])],
            None,
        ),
        (
            "ec key",
            jwt("ES256"),
            vec![("k", &[("kid", EC_PUBLIC)])],
            None,
        ),
        (
            "not a pem key",
            jwt("RS256"),
            vec![("k", &[("kid", "not a key")])],
            Some("key \"kid\" is not a valid RS256 key"),
        ),
        (
            "rsa key for an ec algorithm",
            jwt("ES256"),
            vec![("k", &[("kid", RSA_PUBLIC)])],
            Some("not a valid ES256 key"),
        ),
        (
            "bad expiry metadata",
            keys.clone(),
            vec![("k", &[("alice", "k1"), ("alice.expire", "soon")])],
            Some("alice.expire"),
        ),
        (
            "labels without a credential",
            keys.clone(),
            vec![("k", &[("alice", "k1"), ("bob.labels", "a=b")])],
            Some("no credential"),
        ),
        (
            "two consumers, one api key",
            keys.clone(),
            vec![("k", &[("alice", "same"), ("bob", "same")])],
            Some("same api key"),
        ),
        (
            "one api key in two sources",
            two_sources.clone(),
            vec![("k", &[("alice", "same")]), ("k2", &[("bob", "same")])],
            Some("same api key"),
        ),
        (
            "distinct keys in two sources",
            two_sources,
            vec![("k", &[("alice", "one")]), ("k2", &[("bob", "two")])],
            None,
        ),
    ];
    for (name, config, secrets, want) in cases {
        let resolved = secrets.iter().map(|(n, d)| secret(n, d)).collect();
        let got = reg.catalogue().check_secrets("auth", &config, &resolved);
        match want {
            None => assert_eq!(got, Ok(()), "{name}"),
            Some(text) => {
                let err = got.expect_err(name);
                assert!(err.contains(text), "{name}: {err}");
            }
        }
    }
}
