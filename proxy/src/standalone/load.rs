//! Reading a manifest folder and compiling it: strictly (`--check`: any broken file fails the
//! folder) or file by file ([`Folder`], for serving: a broken file is reported and its last good
//! version is used, or nothing from it if it never loaded).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hookway_crds::compiler::{self, Compiled, Objects, Options};
use hookway_crds::manifests::{self, ManifestError};
use hookway_crds::Catalogue;

use super::StandaloneOptions;

/// Why a folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The folder or a file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Some documents could not be decoded.
    #[error("{} manifest error(s):\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Manifests(Vec<ManifestError>),
}

/// A loaded folder.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The objects found.
    pub objects: Objects,
    /// Documents skipped (other kinds), for information.
    pub notes: Vec<String>,
    /// Files read, sorted.
    pub files: Vec<PathBuf>,
}

/// The manifest files of `dir`: `*.yaml` and `*.yml`, sorted, not recursive, hidden files
/// (editor swap files, `..data` links of mounted ConfigMaps) skipped.
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if is_yaml && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every manifest of `dir`. All decoding errors of all files are reported together.
pub fn load_dir(dir: &Path, options: &StandaloneOptions) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded {
        files: manifest_files(dir)?,
        ..Loaded::default()
    };
    let mut errors = Vec::new();
    for path in &loaded.files {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        let name = path.display().to_string();
        match manifests::parse_into(
            &text,
            &name,
            &options.default_namespace,
            &mut loaded.objects,
        ) {
            Ok(notes) => loaded.notes.extend(notes),
            Err(errs) => errors.extend(errs),
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(LoadError::Manifests(errors))
    }
}

/// Loads and compiles `dir`.
pub fn compile_dir(
    dir: &Path,
    options: &StandaloneOptions,
    catalogue: &Catalogue,
) -> Result<(Compiled, Loaded), LoadError> {
    let loaded = load_dir(dir, options)?;
    let compiled = compile_objects(&loaded.objects, options, catalogue);
    Ok((compiled, loaded))
}

/// Compiles `objects` with the standalone options and the wall clock.
fn compile_objects(
    objects: &Objects,
    options: &StandaloneOptions,
    catalogue: &Catalogue,
) -> Compiled {
    compiler::compile(
        objects,
        &Options {
            root_namespace: options.root_namespace.clone(),
            now: unix_now(),
        },
        catalogue,
    )
}

/// Adds every object of `from` to `into`. Destructured, so a new kind of object cannot be
/// forgotten here (a PlatformPolicy once was).
fn extend(into: &mut Objects, from: &Objects) {
    let Objects {
        plugins,
        services,
        routes,
        core_services,
        endpoint_slices,
        secrets,
        namespaces,
        policies,
        gateway_classes,
        gateways,
        http_routes,
        grpc_routes,
        reference_grants,
        ingresses,
        ingress_classes,
        config_maps,
        fetched: _,
    } = from;
    into.plugins.extend(plugins.iter().cloned());
    into.services.extend(services.iter().cloned());
    into.routes.extend(routes.iter().cloned());
    into.core_services.extend(core_services.iter().cloned());
    into.endpoint_slices.extend(endpoint_slices.iter().cloned());
    into.secrets.extend(secrets.iter().cloned());
    into.namespaces.extend(namespaces.iter().cloned());
    into.policies.extend(policies.iter().cloned());
    into.gateway_classes.extend(gateway_classes.iter().cloned());
    into.gateways.extend(gateways.iter().cloned());
    into.http_routes.extend(http_routes.iter().cloned());
    into.grpc_routes.extend(grpc_routes.iter().cloned());
    into.reference_grants
        .extend(reference_grants.iter().cloned());
    into.ingresses.extend(ingresses.iter().cloned());
    into.ingress_classes.extend(ingress_classes.iter().cloned());
    into.config_maps.extend(config_maps.iter().cloned());
}

/// A manifest file that could not be used as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenFile {
    /// The file.
    pub path: PathBuf,
    /// Why (every document error of the file).
    pub error: String,
    /// Whether its last good version is used instead (else nothing from it is).
    pub kept_previous: bool,
}

impl std::fmt::Display for BrokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.kept_previous {
            "its last good version is used"
        } else {
            "left out"
        };
        write!(f, "{} ({what}): {}", self.path.display(), self.error)
    }
}

/// A manifest folder read file by file, remembering each file's last good objects.
#[derive(Debug, Default)]
pub struct Folder {
    good: BTreeMap<PathBuf, (Objects, Vec<String>)>,
}

impl Folder {
    /// Reads every manifest file of `dir`. A file that cannot be read or has a document that
    /// cannot be decoded is reported in the second value and contributes its last good
    /// objects (none if it never loaded); every other file contributes what it holds now.
    /// Fails only when the folder itself cannot be listed.
    pub fn load(
        &mut self,
        dir: &Path,
        options: &StandaloneOptions,
    ) -> Result<(Loaded, Vec<BrokenFile>), LoadError> {
        let files = manifest_files(dir)?;
        self.good.retain(|path, _| files.contains(path));
        let mut loaded = Loaded::default();
        let mut broken = Vec::new();
        for path in &files {
            let mut objects = Objects::default();
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    let name = path.display().to_string();
                    manifests::parse_into(&text, &name, &options.default_namespace, &mut objects)
                        .map_err(|errs| {
                            errs.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                });
            match parsed {
                Ok(notes) => {
                    self.good.insert(path.clone(), (objects, notes));
                }
                Err(error) => broken.push(BrokenFile {
                    path: path.clone(),
                    error,
                    kept_previous: self.good.contains_key(path),
                }),
            }
            if let Some((objects, notes)) = self.good.get(path) {
                extend(&mut loaded.objects, objects);
                loaded.notes.extend(notes.iter().cloned());
            }
        }
        loaded.files = files;
        Ok((loaded, broken))
    }

    /// [`Folder::load`], then compile.
    pub fn compile(
        &mut self,
        dir: &Path,
        options: &StandaloneOptions,
        catalogue: &Catalogue,
    ) -> Result<(Compiled, Vec<BrokenFile>), LoadError> {
        let (loaded, broken) = self.load(dir, options)?;
        let compiled = compile_objects(&loaded.objects, options, catalogue);
        Ok((compiled, broken))
    }
}

/// The wall clock in Unix seconds for the compiler: only certificate expiry warnings read it,
/// never the snapshot.
fn unix_now() -> Option<i64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}
