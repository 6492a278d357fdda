//! What a user starts is what the tests run: every Apache Kafka image in
//! docker-compose.yml and deploy/ has the version scripts/kafka/pom.xml
//! pins for the test broker.

mod support;

use std::path::Path;

#[test]
fn docker_compose_and_deploy_run_the_tested_kafka_version() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let want = format!("apache/kafka:{}", support::kafka_version());
    let mut files = vec![root.join("docker-compose.yml")];
    let mut dirs = vec![root.join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut images = 0;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for image in text
            .split(|c: char| c.is_whitespace() || c == '"')
            .filter(|w| w.starts_with("apache/kafka:"))
        {
            images += 1;
            assert_eq!(image, want, "in {}", file.display());
        }
    }
    assert!(images > 0, "docker-compose.yml names an apache/kafka image");
}
