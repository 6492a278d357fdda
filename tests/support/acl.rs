//! ACLs on a secured test broker ([`Broker::start_secured`]), created and
//! deleted through its superuser PLAINTEXT listener with Confluent's Python
//! admin client (`tests/python/acls.py`).

use std::io::Write;
use std::process::{Command, Stdio};

use super::*;

/// What a grant names.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resource {
    Topic,
    Group,
    TransactionalId,
    Cluster,
}

/// One ACL: `operation` allowed on a resource, by name or by name prefix.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub resource: Resource,
    pub name: String,
    pub prefixed: bool,
    /// Kafka's operation name: "READ", "WRITE", "CREATE", "DESCRIBE", ...
    pub operation: &'static str,
}

impl Grant {
    pub fn literal(resource: Resource, name: &str, operation: &'static str) -> Grant {
        Grant {
            resource,
            name: name.to_owned(),
            prefixed: false,
            operation,
        }
    }

    pub fn prefixed(resource: Resource, prefix: &str, operation: &'static str) -> Grant {
        Grant {
            prefixed: true,
            ..Grant::literal(resource, prefix, operation)
        }
    }

    fn json(&self, principal: &str) -> serde_json::Value {
        let (resource, name) = match self.resource {
            Resource::Topic => ("TOPIC", self.name.as_str()),
            Resource::Group => ("GROUP", self.name.as_str()),
            Resource::TransactionalId => ("TRANSACTIONAL_ID", self.name.as_str()),
            Resource::Cluster => ("BROKER", "kafka-cluster"),
        };
        serde_json::json!({
            "principal": principal,
            "resource": resource,
            "name": name,
            "pattern": if self.prefixed { "PREFIXED" } else { "LITERAL" },
            "operation": self.operation,
        })
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pattern = if self.prefixed { " (prefix)" } else { "" };
        write!(
            f,
            "{} on {:?} {}{pattern}",
            self.operation, self.resource, self.name
        )
    }
}

impl Broker {
    /// Allows `principal` (`User:name`) each of `grants`.
    pub fn grant(&self, principal: &str, grants: &[Grant]) {
        acls(&self.bootstrap(), "create", principal, grants);
    }

    /// Removes each of `grants` from `principal`.
    pub fn revoke(&self, principal: &str, grants: &[Grant]) {
        acls(&self.bootstrap(), "delete", principal, grants);
    }
}

fn acls(bootstrap: &str, op: &str, principal: &str, grants: &[Grant]) {
    if grants.is_empty() {
        return;
    }
    let python = super::python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/acls.py");
    let request = serde_json::json!({
        "bootstrap": bootstrap,
        "op": op,
        "acls": grants.iter().map(|g| g.json(principal)).collect::<Vec<_>>(),
    });
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (scripts/test.sh installs it): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "acls.py {op} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
