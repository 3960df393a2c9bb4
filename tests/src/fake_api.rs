//! An in-process fake Kubernetes API server: just enough of the real one for the controller's
//! code to run unchanged through a real `kube::Client`.
//!
//! Implemented: list (with `resourceVersion`, `labelSelector` equality terms, `fieldSelector`
//! `type=` / `metadata.name=` / `metadata.namespace=`), watch (`?watch=1` from a resourceVersion,
//! chunked JSON events, `BOOKMARK`s when `allowWatchBookmarks`, `410 Gone` for compacted
//! versions, `timeoutSeconds`), get, create, replace (optimistic concurrency on
//! `resourceVersion`), delete, merge patches, server-side apply (create-or-update; needs
//! `fieldManager`, `apiVersion` and `kind`; fields a manager applied before and leaves out are
//! removed, as the real field ownership does; on `/status` one manager owns the status here, so
//! applying replaces it), Leases and Events (stored like anything else). Like a real API server
//! it refuses EndpointSlices with loopback addresses (422) and Lease names that are not DNS-1123
//! subdomains (422).
//!
//! Paths: `/api/v1/...` and `/apis/{group}/{version}/...`, namespaced or cluster-wide.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// `(api prefix, plural)`, e.g. `("apis/hookway.dev/v1alpha1", "routes")`.
type Resource = (String, String);

#[derive(Clone, Debug)]
struct WatchEvent {
    rv: u64,
    kind: &'static str,
    resource: Resource,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// resource -> (namespace, name) -> object
    objects: BTreeMap<Resource, BTreeMap<(String, String), Value>>,
    /// Events kept for watches; versions before `compacted` answer 410.
    log: Vec<WatchEvent>,
    compacted: u64,
    /// `PATCH .../status` requests received, by `resource/ns/name`.
    status_patches: BTreeMap<String, u32>,
    /// What each field manager last applied (server-side apply), by object and manager.
    applied: BTreeMap<(Resource, (String, String), String), Value>,
    /// Discovery: `group/version` → its resources `(plural, kind, namespaced)`
    /// ([`FakeApi::serve_group`]); other group versions answer 404 to discovery.
    groups: BTreeMap<String, Vec<(String, String, bool)>>,
}

/// A running fake API server.
#[derive(Clone)]
pub struct FakeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<WatchEvent>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code.as_u16(),
    });
    respond(code, &body)
}

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// A parsed request path.
#[derive(Debug)]
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("api/v1".to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("apis/{g}/{v}"), rest),
        _ => return None,
    };
    let t = |plural: &str, ns: Option<&str>, name: Option<&str>, status: bool| Target {
        resource: (prefix.clone(), plural.to_string()),
        namespace: ns.map(String::from),
        name: name.map(String::from),
        status,
    };
    Some(match rest {
        [plural] => t(plural, None, None, false),
        ["namespaces", name] => t("namespaces", None, Some(name), false),
        ["namespaces", ns, plural] => t(plural, Some(ns), None, false),
        ["namespaces", ns, plural, name] => t(plural, Some(ns), Some(name), false),
        ["namespaces", ns, plural, name, "status"] => t(plural, Some(ns), Some(name), true),
        [plural, name] => t(plural, None, Some(name), false),
        [plural, name, "status"] => t(plural, None, Some(name), true),
        _ => return None,
    })
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Label and field selectors (equality terms only).
#[derive(Clone, Default, Debug)]
struct Selector {
    labels: Vec<(String, String)>,
    fields: Vec<(String, String)>,
}

impl Selector {
    fn from_query(q: &BTreeMap<String, String>) -> Self {
        let terms = |s: Option<&String>| -> Vec<(String, String)> {
            s.map(|s| {
                s.split(',')
                    .filter(|t| !t.is_empty())
                    .filter_map(|t| {
                        let (k, v) = t.split_once("==").or_else(|| t.split_once('='))?;
                        Some((k.trim().to_string(), v.trim().to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
        };
        Self {
            labels: terms(q.get("labelSelector")),
            fields: terms(q.get("fieldSelector")),
        }
    }

    fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.labels
            .iter()
            .all(|(k, v)| labels[k].as_str() == Some(v.as_str()))
            && self.fields.iter().all(|(k, v)| {
                let actual = match k.as_str() {
                    "type" => obj["type"].as_str(),
                    "metadata.name" => obj["metadata"]["name"].as_str(),
                    "metadata.namespace" => obj["metadata"]["namespace"].as_str(),
                    _ => None,
                };
                actual == Some(v.as_str())
            })
    }
}

impl FakeApi {
    /// Starts the server on `127.0.0.1:0`.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            rv: 100,
            ..Default::default()
        }));
        let (events, _) = broadcast::channel(4096);
        let api = Self {
            addr,
            state,
            events,
            task: Arc::default(),
        };
        let server = api.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        *api.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        api
    }

    /// Stops accepting connections (open watches end with the runtime).
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig YAML pointing at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake\n",
            self.url()
        )
    }

    /// A `kube::Client` built from [`FakeApi::kubeconfig`].
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig()).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    /// Forgets watch history: watches from older versions get `410 Gone`.
    pub fn compact(&self) {
        let mut s = self.lock();
        s.compacted = s.rv;
        s.log.clear();
    }

    /// Makes discovery (`GET /apis/{group_version}`) list `resources` (`(plural, kind,
    /// namespaced)`), as a real API server does once CRDs are installed; e.g. the Gateway API.
    pub fn serve_group(&self, group_version: &str, resources: &[(&str, &str, bool)]) {
        self.lock().groups.insert(
            group_version.to_string(),
            resources
                .iter()
                .map(|(p, k, n)| (p.to_string(), k.to_string(), *n))
                .collect(),
        );
    }

    /// The `APIResourceList` for `GET /apis/{group}/{version}` when [`FakeApi::serve_group`]
    /// named it, a 404 when not; `None` for any other path.
    fn discovery(&self, path: &str) -> Option<Response<Body>> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let ["apis", group, version] = segs.as_slice() else {
            return None;
        };
        let group_version = format!("{group}/{version}");
        let s = self.lock();
        let Some(resources) = s.groups.get(&group_version) else {
            return Some(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no group {group_version}"),
            ));
        };
        let resources: Vec<Value> = resources
            .iter()
            .map(|(plural, kind, namespaced)| {
                json!({"name": plural, "singularName": "", "namespaced": namespaced,
                       "kind": kind, "verbs": ["get", "list", "watch", "patch"]})
            })
            .collect();
        Some(respond(
            StatusCode::OK,
            &json!({"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": group_version, "resources": resources}),
        ))
    }

    /// How many status patches `plural/ns/name` received.
    pub fn status_patches(&self, plural: &str, namespace: &str, name: &str) -> u32 {
        let key = format!("{plural}/{namespace}/{name}");
        self.lock().status_patches.get(&key).copied().unwrap_or(0)
    }

    /// Every `plural/ns/name` that received a status patch.
    pub fn status_patch_keys(&self) -> Vec<String> {
        self.lock().status_patches.keys().cloned().collect()
    }

    /// Status patches received in total.
    pub fn total_status_patches(&self) -> u32 {
        self.lock().status_patches.values().sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `obj` (its resourceVersion already set), records the watch event `kind` and
    /// answers `code` with the object.
    fn store(
        &self,
        s: &mut State,
        resource: &Resource,
        key: (String, String),
        mut obj: Value,
        kind: &'static str,
        code: StatusCode,
    ) -> Response<Body> {
        // Like the real API server, no `metadata.generation` on kinds without a spec whose data
        // is the point (a change of a ConfigMap or Secret must not look status-only).
        if matches!(resource.1.as_str(), "configmaps" | "secrets") {
            if let Some(meta) = obj["metadata"].as_object_mut() {
                meta.remove("generation");
            }
        }
        s.objects
            .entry(resource.clone())
            .or_default()
            .insert(key, obj.clone());
        self.record(s, kind, resource, obj.clone());
        respond(code, &obj)
    }

    fn record(&self, s: &mut State, kind: &'static str, resource: &Resource, object: Value) {
        let ev = WatchEvent {
            rv: s.rv,
            kind,
            resource: resource.clone(),
            object,
        };
        s.log.push(ev.clone());
        let _ = self.events.send(ev);
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Some(discovery) = self.discovery(req.uri().path()) {
            return discovery;
        }
        let Some(target) = parse_path(req.uri().path()) else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route {}", req.uri()),
            );
        };
        let q = query(&req);
        let method = req.method().clone();
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
        };
        let parse = || -> Result<Value, String> {
            serde_json::from_slice(&body)
                .or_else(|_| serde_yaml::from_slice(&body))
                .map_err(|e| e.to_string())
        };
        let bad = |e: String| status(StatusCode::BAD_REQUEST, "BadRequest", e);
        match (method, target.name.is_some()) {
            (Method::GET, false) if q.get("watch").is_some_and(|w| w == "1" || w == "true") => {
                self.watch(&target, &q)
            }
            (Method::GET, false) => self.list(&target, &q),
            (Method::GET, true) => self.get(&target),
            (Method::POST, false) => match parse() {
                Ok(obj) => self.create(&target, obj),
                Err(e) => bad(e),
            },
            (Method::PUT, true) => match parse() {
                Ok(obj) => self.replace(&target, obj),
                Err(e) => bad(e),
            },
            (Method::PATCH, true) => match parse() {
                Ok(patch)
                    if content_type.starts_with("application/apply-patch") && !target.status =>
                {
                    self.apply(&target, patch, &q)
                }
                Ok(patch) => self.patch(&target, patch, &content_type),
                Err(e) => bad(e),
            },
            (Method::DELETE, true) => self.delete(&target),
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "unsupported",
            ),
        }
    }

    fn key(target: &Target) -> (String, String) {
        (
            target.namespace.clone().unwrap_or_default(),
            target.name.clone().unwrap_or_default(),
        )
    }

    fn list(&self, target: &Target, q: &BTreeMap<String, String>) -> Response<Body> {
        let sel = Selector::from_query(q);
        let s = self.lock();
        let items: Vec<Value> = s
            .objects
            .get(&target.resource)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|((ns, _), _)| target.namespace.as_ref().is_none_or(|t| t == ns))
            .map(|(_, o)| o.clone())
            .filter(|o| sel.matches(o))
            .collect();
        respond(
            StatusCode::OK,
            &json!({"kind": "List", "apiVersion": "v1",
                    "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
        )
    }

    fn get(&self, target: &Target) -> Response<Body> {
        let s = self.lock();
        match s
            .objects
            .get(&target.resource)
            .and_then(|m| m.get(&Self::key(target)))
        {
            Some(o) => respond(StatusCode::OK, o),
            None => status(StatusCode::NOT_FOUND, "NotFound", "not found"),
        }
    }

    fn create(&self, target: &Target, mut obj: Value) -> Response<Body> {
        let name = obj["metadata"]["name"]
            .as_str()
            .map(String::from)
            .or_else(|| {
                obj["metadata"]["generateName"]
                    .as_str()
                    .map(|g| format!("{g}{}", rand_suffix()))
            });
        let Some(name) = name else {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "metadata.name required",
            );
        };
        if let Some(invalid) = invalid(&target.resource, &name, &obj) {
            return invalid;
        }
        let mut s = self.lock();
        let key = (target.namespace.clone().unwrap_or_default(), name.clone());
        if s.objects
            .get(&target.resource)
            .is_some_and(|m| m.contains_key(&key))
        {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{name} already exists"),
            );
        }
        s.rv += 1;
        let rv = s.rv;
        let meta = &mut obj["metadata"];
        meta["name"] = json!(name);
        if let Some(ns) = &target.namespace {
            meta["namespace"] = json!(ns);
        }
        meta["resourceVersion"] = json!(rv.to_string());
        meta["uid"] = json!(format!("uid-{rv}"));
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!(creation_timestamp(rv));
        s.applied
            .retain(|(r, k, _), _| !(r == &target.resource && k == &key));
        self.store(
            &mut s,
            &target.resource,
            key,
            obj,
            "ADDED",
            StatusCode::CREATED,
        )
    }

    fn replace(&self, target: &Target, mut obj: Value) -> Response<Body> {
        if target.resource.1 == "endpointslices" {
            if let Some(bad) = loopback_endpoint(&obj) {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("{bad}: loopback"),
                );
            }
        }
        let mut s = self.lock();
        let key = Self::key(target);
        let Some(old) = s
            .objects
            .get(&target.resource)
            .and_then(|m| m.get(&key))
            .cloned()
        else {
            return status(StatusCode::NOT_FOUND, "NotFound", "not found");
        };
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str() {
            if Some(rv) != old["metadata"]["resourceVersion"].as_str() {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    "the object has been modified",
                );
            }
        }
        s.rv += 1;
        let rv = s.rv;
        let spec_changed = obj.get("spec") != old.get("spec");
        let generation =
            old["metadata"]["generation"].as_i64().unwrap_or(1) + i64::from(spec_changed);
        for f in ["uid", "creationTimestamp", "namespace", "name"] {
            obj["metadata"][f] = old["metadata"][f].clone();
        }
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        obj["metadata"]["generation"] = json!(generation);
        if old.get("status").is_some() && !target.status {
            obj["status"] = old["status"].clone();
        }
        self.store(
            &mut s,
            &target.resource,
            key,
            obj,
            "MODIFIED",
            StatusCode::OK,
        )
    }

    fn patch(&self, target: &Target, patch: Value, content_type: &str) -> Response<Body> {
        let mut s = self.lock();
        let key = Self::key(target);
        let Some(mut obj) = s
            .objects
            .get(&target.resource)
            .and_then(|m| m.get(&key))
            .cloned()
        else {
            return status(StatusCode::NOT_FOUND, "NotFound", "not found");
        };
        if target.status {
            if !content_type.starts_with("application/apply-patch") {
                return status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    "status takes server-side apply here",
                );
            }
            // One manager owns status here: applying replaces it.
            obj["status"] = patch["status"].clone();
            *s.status_patches
                .entry(format!("{}/{}/{}", target.resource.1, key.0, key.1))
                .or_default() += 1;
        } else {
            let spec_before = obj.get("spec").cloned();
            merge(&mut obj, &patch);
            bump_generation(&mut obj, spec_before);
        }
        s.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        self.store(
            &mut s,
            &target.resource,
            key,
            obj,
            "MODIFIED",
            StatusCode::OK,
        )
    }

    /// Server-side apply on an object (not `/status`): creates it when missing, else merges the
    /// applied configuration, first removing the fields this manager applied last time and
    /// leaves out now.
    fn apply(
        &self,
        target: &Target,
        config: Value,
        q: &BTreeMap<String, String>,
    ) -> Response<Body> {
        let Some(manager) = q.get("fieldManager").filter(|m| !m.is_empty()) else {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "PATCH is not supported: fieldManager is required for apply requests",
            );
        };
        if !config["apiVersion"].is_string() || !config["kind"].is_string() {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "apply: apiVersion and kind must be set",
            );
        }
        let name = target.name.clone().unwrap_or_default();
        if config["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n != name)
        {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            );
        }
        let key = Self::key(target);
        let owner = (target.resource.clone(), key.clone(), manager.clone());
        if let Some(invalid) = invalid(&target.resource, &name, &config) {
            return invalid;
        }
        let mut s = self.lock();
        let existing = s
            .objects
            .get(&target.resource)
            .and_then(|m| m.get(&key))
            .cloned();
        let Some(mut obj) = existing else {
            drop(s);
            let response = self.create(target, config.clone());
            if response.status() == StatusCode::CREATED {
                self.lock().applied.insert(owner, config);
            }
            return response;
        };
        if let Some(previous) = s.applied.get(&owner) {
            prune(&mut obj, previous, &config);
        }
        let spec_before = obj.get("spec").cloned();
        let mut config_body = config.clone();
        if let Some(meta) = config_body["metadata"].as_object_mut() {
            for f in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
                meta.remove(f);
            }
        }
        merge(&mut obj, &config_body);
        bump_generation(&mut obj, spec_before);
        s.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        s.applied.insert(owner, config);
        self.store(
            &mut s,
            &target.resource,
            key,
            obj,
            "MODIFIED",
            StatusCode::OK,
        )
    }

    fn delete(&self, target: &Target) -> Response<Body> {
        let mut s = self.lock();
        let key = Self::key(target);
        let Some(mut obj) = s
            .objects
            .get_mut(&target.resource)
            .and_then(|m| m.remove(&key))
        else {
            return status(StatusCode::NOT_FOUND, "NotFound", "not found");
        };
        s.applied
            .retain(|(r, k, _), _| !(r == &target.resource && k == &key));
        s.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        self.record(&mut s, "DELETED", &target.resource, obj.clone());
        respond(StatusCode::OK, &obj)
    }

    fn watch(&self, target: &Target, q: &BTreeMap<String, String>) -> Response<Body> {
        let sel = Selector::from_query(q);
        let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(290u64)
            .min(290);
        let from: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1024);
        let line = |v: Value| Ok(Frame::data(Bytes::from(format!("{v}\n"))));
        let mut live = self.events.subscribe();
        let (backlog, current, gone) = {
            let s = self.lock();
            let gone = from != 0 && from < s.compacted;
            let backlog: Vec<WatchEvent> = if from == 0 {
                Vec::new()
            } else {
                s.log.iter().filter(|e| e.rv > from).cloned().collect()
            };
            (backlog, s.rv, gone)
        };
        let resource = target.resource.clone();
        let namespace = target.namespace.clone();
        let wanted = move |e: &WatchEvent| {
            e.resource == resource
                && namespace
                    .as_ref()
                    .is_none_or(|ns| e.object["metadata"]["namespace"].as_str() == Some(ns))
                && sel.matches(&e.object)
        };
        tokio::spawn(async move {
            if gone {
                let _ = tx
                    .send(line(json!({"type": "ERROR", "object": {
                        "kind": "Status", "apiVersion": "v1", "status": "Failure", "metadata": {},
                        "reason": "Expired", "code": 410,
                        "message": format!("too old resource version: {from} ({current})")}})))
                    .await;
                return;
            }
            let mut last = from.max(current.min(from));
            for e in backlog.into_iter().filter(&wanted) {
                last = e.rv;
                if tx
                    .send(line(json!({"type": e.kind, "object": e.object})))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    ev = live.recv() => match ev {
                        Ok(e) if e.rv > last && wanted(&e) => {
                            last = e.rv;
                            if tx.send(line(json!({"type": e.kind, "object": e.object}))).await.is_err() { return; }
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(_) => return,
                    },
                    _ = tick.tick(), if bookmarks => {
                        let bm = json!({"type": "BOOKMARK", "object": {
                            "kind": "", "apiVersion": "", "metadata": {"resourceVersion": last.max(from).to_string()}}});
                        if tx.send(line(bm)).await.is_err() { return; }
                    }
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = tx.closed() => return,
                }
            }
        });
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed_unsync();
        let mut r = Response::new(body);
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// A creation time that grows with the resource version (one second each, from 2026-01-01), so
/// objects created later are younger, as on a real API server.
fn creation_timestamp(rv: u64) -> String {
    let start = 1_767_225_600; // 2026-01-01T00:00:00Z
    k8s_openapi::jiff::Timestamp::from_second(start + i64::try_from(rv).unwrap_or(0))
        .map_or_else(|_| "2026-01-01T00:00:00Z".to_string(), |t| t.to_string())
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{:05x}", N.fetch_add(1, Ordering::Relaxed))
}

/// A JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Removes from `obj` the fields present in `previous` but absent from `next` (what a manager
/// stops applying is no longer owned, hence removed).
fn prune(obj: &mut Value, previous: &Value, next: &Value) {
    let (Value::Object(o), Value::Object(p)) = (obj, previous) else {
        return;
    };
    for (k, pv) in p {
        match next.get(k) {
            None => {
                o.remove(k);
            }
            Some(nv) => {
                if let Some(ov) = o.get_mut(k) {
                    prune(ov, pv, nv);
                }
            }
        }
    }
}

/// What a real API server refuses on create/apply (422), for the kinds the tests use.
fn invalid(resource: &Resource, name: &str, obj: &Value) -> Option<Response<Body>> {
    match resource.1.as_str() {
        "endpointslices" => loopback_endpoint(obj).map(|bad| {
            status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("endpoints[].addresses: Invalid value: \"{bad}\": may not be in the loopback range (127.0.0.0/8, ::1/128)"),
            )
        }),
        "leases" if !dns1123_subdomain(name) => Some(status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        )),
        _ => None,
    }
}

/// A spec change bumps `metadata.generation`, as the API server does for custom resources.
fn bump_generation(obj: &mut Value, spec_before: Option<Value>) {
    if obj.get("spec") != spec_before.as_ref() {
        let g = obj["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        obj["metadata"]["generation"] = json!(g);
    }
}

fn dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn loopback_endpoint(obj: &Value) -> Option<String> {
    obj["endpoints"]
        .as_array()?
        .iter()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(String::from))
        .find(|a| {
            a.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        })
}
