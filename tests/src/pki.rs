//! A throw-away CA and a server certificate for 127.0.0.1 / localhost (rcgen).

use std::path::PathBuf;

/// Files and PEMs of a test PKI.
pub struct Pki {
    /// Temporary folder holding the files.
    pub dir: PathBuf,
    /// CA certificate file (PEM).
    pub ca_file: PathBuf,
    /// Bearer token file.
    pub token_file: PathBuf,
    /// The token.
    pub token: String,
    /// Server certificate (PEM).
    pub cert_pem: String,
    /// Server key (PEM).
    pub key_pem: String,
}

impl Pki {
    /// Generates a CA, a leaf for 127.0.0.1/localhost and a token, under a fresh temp folder.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hookway-e2e-{name}-{}", std::process::id()));
        Self::new_in(dir, name)
    }

    /// Like [`Pki::new`], with the files in `dir` (created; removed when the `Pki` is dropped).
    pub fn new_in(dir: PathBuf, name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write ca");
        let token = format!("token-{name}");
        let token_file = dir.join("token");
        std::fs::write(&token_file, &token).expect("write token");
        Self {
            dir,
            ca_file,
            token_file,
            token,
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
