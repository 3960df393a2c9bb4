//! Reading a manifest folder and compiling it.

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
    let compiled = compiler::compile(
        &loaded.objects,
        &Options {
            root_namespace: options.root_namespace.clone(),
            // Only certificate expiry warnings read the clock, never the snapshot.
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok()),
        },
        catalogue,
    );
    Ok((compiled, loaded))
}
