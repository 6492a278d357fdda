//! A certificate authority for the secured-broker tests, made with the
//! `openssl` command (scripts/test.sh installs it): the broker's
//! certificate, clients' certificates, and the broken ones a platform meets
//! (expired, issued by another CA). Keys are unencrypted PKCS#8 PEM, which
//! both Kafka's PEM key stores and librdkafka read.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA in a directory of its own, and what it has issued there.
pub struct Pki {
    dir: PathBuf,
    /// `openssl ca` keeps its serial and index in files: one issue at a time.
    issuing: std::sync::Mutex<()>,
}

/// A key and its certificate, PEM files.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The subject's common name (a client's principal is `User:<cn>`).
    pub cn: String,
    pub key: PathBuf,
    pub cert: PathBuf,
}

/// When an issued certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Validity {
    /// From now, for 30 days.
    Current,
    /// It ended in 2021.
    Expired,
}

impl Pki {
    /// A new CA named `name` in `dir` (created).
    pub fn new(dir: &Path, name: &str) -> Pki {
        std::fs::create_dir_all(dir.join("issued")).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        std::fs::write(dir.join("ca.cnf"), ca_config(dir)).unwrap();
        let pki = Pki {
            dir: dir.to_owned(),
            issuing: std::sync::Mutex::new(()),
        };
        openssl(
            &[
                "req",
                "-x509",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-days",
                "30",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
            ],
            &[&pki.dir.join("ca.key"), Path::new("-out"), &pki.ca()],
        );
        pki
    }

    /// The CA's certificate (what clients and the broker trust).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate to `cn`, with subject alternative names `sans`
    /// (`DNS:localhost`, `IP:127.0.0.1`), for servers and clients alike.
    pub fn issue(&self, cn: &str, sans: &[&str], validity: Validity) -> Issued {
        let base = self.dir.join("issued").join(super::unique(cn));
        let key = base.with_extension("key");
        let csr = base.with_extension("csr");
        let cert = base.with_extension("pem");
        openssl(
            &[
                "req",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
            ],
            &[&key, Path::new("-out"), &csr],
        );
        let ext = base.with_extension("ext");
        let mut extensions = String::from(
            "[leaf]\nbasicConstraints = CA:FALSE\n\
             keyUsage = digitalSignature,keyEncipherment\n\
             extendedKeyUsage = serverAuth,clientAuth\n",
        );
        if !sans.is_empty() {
            extensions.push_str(&format!("subjectAltName = {}\n", sans.join(",")));
        }
        std::fs::write(&ext, extensions).unwrap();
        let dates: &[&str] = match validity {
            Validity::Current => &["-days", "30"],
            Validity::Expired => &[
                "-startdate",
                "20210101000000Z",
                "-enddate",
                "20210201000000Z",
            ],
        };
        let _one_at_a_time = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        let mut args = vec!["ca", "-batch", "-notext", "-extensions", "leaf"];
        args.extend_from_slice(dates);
        args.extend_from_slice(&["-config"]);
        openssl(
            &args,
            &[
                &self.dir.join("ca.cnf"),
                Path::new("-extfile"),
                &ext,
                Path::new("-in"),
                &csr,
                Path::new("-out"),
                &cert,
            ],
        );
        Issued {
            cn: cn.to_owned(),
            key,
            cert,
        }
    }

    /// `issued`'s key as encrypted PKCS#8 PEM text, under `password`.
    pub fn encrypted_key(&self, issued: &Issued, password: &str) -> String {
        let out = Command::new("openssl")
            .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout"])
            .arg(format!("pass:{password}"))
            .arg("-in")
            .arg(&issued.key)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A key store for Kafka (`ssl.keystore.type=PEM`): the key, then the
    /// certificate chain.
    pub fn key_store(&self, issued: &Issued) -> PathBuf {
        let store = issued.cert.with_extension("keystore.pem");
        let text = [&issued.key, &issued.cert, &self.ca()]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<String>();
        std::fs::write(&store, text).unwrap();
        store
    }
}

fn ca_config(dir: &Path) -> String {
    format!(
        "[ca]\ndefault_ca = test_ca\n\
         [test_ca]\n\
         database = {d}/index.txt\n\
         new_certs_dir = {d}/issued\n\
         certificate = {d}/ca.pem\n\
         private_key = {d}/ca.key\n\
         serial = {d}/serial\n\
         default_md = sha256\n\
         policy = any_name\n\
         unique_subject = no\n\
         copy_extensions = none\n\
         [any_name]\ncommonName = supplied\n",
        d = dir.display()
    )
}

fn openssl(args: &[&str], paths: &[&Path]) {
    let out = Command::new("openssl")
        .args(args)
        .args(paths)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (scripts/test.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
