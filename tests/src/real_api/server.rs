//! One real kube-apiserver (with etcd) on loopback, started by `../shared/k8s/start.sh`.
//!
//! Everything it writes lives in a temp folder of its own (never under `shared/`, which CI mounts
//! read-only). It is stopped, and the folder removed, when the [`ApiServer`] is dropped; a
//! watchdog process (`tail --pid` on the test process, in a process group of its own) does the
//! same when the test process ends without dropping it (a shared fixture in a `static`, a panic
//! that aborts, a kill), so no API server outlives its tests.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::Client;

use super::Error;

/// The environment variable naming the kube-apiserver binary (relative paths are taken from the
/// repository root).
pub const BINARY_ENV: &str = "HOOKWAY_KUBE_APISERVER";

/// The repository root (the parent of the `tests` crate).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// Where the binary and the start/stop scripts are.
#[derive(Clone, Debug)]
pub struct Location {
    /// The kube-apiserver binary.
    pub binary: PathBuf,
    /// `start.sh` (`start.sh DIR` prints DIR/kubeconfig once /readyz is ok).
    pub start: PathBuf,
    /// `stop.sh` (`stop.sh DIR` ends exactly what `start.sh DIR` started).
    pub stop: PathBuf,
}

impl Location {
    /// Finds the binary (`$HOOKWAY_KUBE_APISERVER`, default `../shared/k8s/bin/kube-apiserver`
    /// from the repository root) and the scripts in `../shared/k8s/`; `Err` says what is missing.
    pub fn find() -> Result<Self, String> {
        Self::find_from(&repo_root(), std::env::var_os(BINARY_ENV))
    }

    /// [`Location::find`] for the repository at `root`, with `binary` as the variable's value.
    pub fn find_from(root: &Path, binary: Option<OsString>) -> Result<Self, String> {
        let scripts = root.join("../shared/k8s");
        let location = Self {
            binary: match binary {
                Some(path) => root.join(path),
                None => scripts.join("bin/kube-apiserver"),
            },
            start: scripts.join("start.sh"),
            stop: scripts.join("stop.sh"),
        };
        for path in [&location.binary, &location.start, &location.stop] {
            if !path.is_file() {
                return Err(format!("{} is absent", path.display()));
            }
        }
        Ok(location)
    }
}

/// A running API server; stopped (and its folder removed) on drop.
pub struct ApiServer {
    /// The admin kubeconfig (user in `system:masters`).
    pub kubeconfig: PathBuf,
    /// The folder holding everything of this server (and whatever the caller puts there).
    pub dir: PathBuf,
    location: Location,
    watchdog: Option<Child>,
}

impl ApiServer {
    /// Starts an API server in a fresh temp folder (about 4 s, more when etcd must be installed).
    pub fn start(location: Location) -> Result<Self, Error> {
        // One start at a time in this process: `start.sh` picks its free ports before binding
        // them, and two servers starting at once on a loaded box also race for CPU.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(format!(
            "hookway-real-api-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let watchdog = watchdog(&location.stop, &dir)?;
        let location = Location {
            binary: executable(&location.binary, &dir)?,
            ..location
        };
        let mut server = Self {
            kubeconfig: PathBuf::new(),
            dir,
            location,
            watchdog: Some(watchdog),
        };
        let output = Command::new("bash")
            .arg(&server.location.start)
            .arg(server.dir.join("k8s"))
            .env(BINARY_ENV, &server.location.binary)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(&server.location.start, e))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match stdout.lines().last() {
            Some(path) if output.status.success() => server.kubeconfig = PathBuf::from(path),
            _ => {
                return Err(Error::Start(format!(
                    "{} exited with {}: {}",
                    server.location.start.display(),
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                )))
            }
        }
        Ok(server)
    }

    /// A client with the admin kubeconfig.
    pub async fn admin_client(&self) -> Result<Client, Error> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        client(kubeconfig).await
    }

    /// A client presenting `token` (e.g. a ServiceAccount's) instead of the admin certificate.
    pub async fn client_with_token(&self, token: &str) -> Result<Client, Error> {
        let mut kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let auth: AuthInfo = serde_json::from_value(serde_json::json!({ "token": token }))
            .expect("an AuthInfo with a token");
        for named in &mut kubeconfig.auth_infos {
            named.auth_info = Some(auth.clone());
        }
        client(kubeconfig).await
    }

    /// The API server's log so far (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("k8s/logs/kube-apiserver.log"))
            .unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.location.stop)
            .arg(self.dir.join("k8s"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

async fn client(kubeconfig: Kubeconfig) -> Result<Client, Error> {
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Starts the process that stops the API server and removes `dir` once this process is gone.
fn watchdog(stop: &Path, dir: &Path) -> Result<Child, Error> {
    use std::os::unix::process::CommandExt;
    Command::new("sh")
        .args([
            "-c",
            r#"tail --pid="$1" -f /dev/null; bash "$2" "$3/k8s" >/dev/null 2>&1; rm -rf "$3""#,
            "hookway-real-api-watchdog",
        ])
        .arg(std::process::id().to_string())
        .arg(stop)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io(Path::new("sh"), e))
}

/// `binary`, or a copy of it in `dir` with execute bits when it has none (a read-only checkout).
fn executable(binary: &Path, dir: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(binary)
        .map_err(|e| Error::io(binary, e))?
        .permissions()
        .mode();
    if mode & 0o111 != 0 {
        return Ok(binary.to_path_buf());
    }
    let copy = dir.join("kube-apiserver");
    std::fs::copy(binary, &copy).map_err(|e| Error::io(&copy, e))?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(&copy, e))?;
    Ok(copy)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Prints `line` to the real stderr, past the test harness's output capture, once per process.
pub fn say_once(line: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
}
