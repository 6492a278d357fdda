//! Which librdkafka pass-through properties hold secrets, and how values
//! that may carry one (URLs) are shown: what `check-config` prints must
//! never hand a password to whoever reads a terminal or a CI log.

use crate::core::secret::MASK;

/// Properties librdkafka itself flags sensitive (`_RK_SENSITIVE` in
/// rdkafka_conf.c, librdkafka 2.12), plus the alias of one of them.
/// `sasl.username` is among them: on managed clusters it is the API key.
const SENSITIVE: &[&str] = &[
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.ca.pem",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "ssl_key",
];

/// Fragments of a key that is named like a secret. Matched anywhere in the
/// lower-cased key with `_` and `-` read as `.`, so near misses and
/// misspellings (`sasl.passwd`, `ssl.key.passwrd`) match too.
const SECRET_FRAGMENTS: &[&str] = &[
    "pass", // password, passwd, passphrase (pasword: see below)
    "pwd",
    "secret",
    "token",
    "cred", // credential(s)
    "private",
    "key", // ssl.key.*, keystore, keytab, api.key, apikey
    "jaas",
    "user", // username, user.info, userinfo
    "extension",
    "oauthbearer.config",
    "kinit", // a kinit command line can hold a password
];

/// Key segments that name a secret however they are spelt around: `auth`
/// as a segment prefix (authentication, authorization), not inside
/// `oauthbearer`; and misspellings of "password" that drop a letter.
const SECRET_SEGMENT_PREFIXES: &[&str] = &["auth", "pas", "pw"];

/// Named like a secret, but shown: a URL whose secrets [`mask_url`] masks.
const SHOWN_DESPITE_NAME: &[&str] = &["sasl.oauthbearer.token.endpoint.url"];

/// librdkafka properties (CONFIGURATION.md, librdkafka 2.12) known to hold
/// no secret; the only ones `check-config` shows. Callbacks and pointers,
/// which cannot be set from text, are left out.
const PUBLIC: &[&str] = &[
    "acks",
    "allow.auto.create.topics",
    "api.version.fallback.ms",
    "api.version.request",
    "api.version.request.timeout.ms",
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "batch.num.messages",
    "batch.size",
    "bootstrap.servers",
    "broker.address.family",
    "broker.address.ttl",
    "broker.version.fallback",
    "builtin.features",
    "check.crcs",
    "client.dns.lookup",
    "client.id",
    "client.rack",
    "compression.codec",
    "compression.level",
    "compression.type",
    "connections.max.idle.ms",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "debug",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "enable.metrics.push",
    "enable.partition.eof",
    "enable.random.seed",
    "enable.sasl.oauthbearer.unsecure.jwt",
    "enable.ssl.certificate.verification",
    "enabled_events",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "https.ca.location",
    "https.ca.pem",
    "internal.termination.signal",
    "isolation.level",
    "linger.ms",
    "log.connection.close",
    "log.queue",
    "log.thread.name",
    "log_level",
    "max.in.flight",
    "max.in.flight.requests.per.connection",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "message.copy.max.bytes",
    "message.max.bytes",
    "message.send.max.retries",
    "message.timeout.ms",
    "metadata.broker.list",
    "metadata.max.age.ms",
    "metadata.recovery.rebootstrap.trigger.ms",
    "metadata.recovery.strategy",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "partitioner",
    "plugin.library.paths",
    "produce.offset.report",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "queuing.strategy",
    "receive.message.max.bytes",
    "reconnect.backoff.jitter.ms",
    "reconnect.backoff.max.ms",
    "reconnect.backoff.ms",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "retry.backoff.max.ms",
    "retry.backoff.ms",
    "sasl.kerberos.min.time.before.relogin",
    "sasl.kerberos.principal",
    "sasl.kerberos.service.name",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.oauthbearer.assertion.algorithm",
    "sasl.oauthbearer.assertion.claim.aud",
    "sasl.oauthbearer.assertion.claim.exp.seconds",
    "sasl.oauthbearer.assertion.claim.iss",
    "sasl.oauthbearer.assertion.claim.jti.include",
    "sasl.oauthbearer.assertion.claim.nbf.seconds",
    "sasl.oauthbearer.assertion.claim.sub",
    "sasl.oauthbearer.assertion.file",
    "sasl.oauthbearer.assertion.jwt.template.file",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.grant.type",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.token.endpoint.url",
    "security.protocol",
    "session.timeout.ms",
    "socket.blocking.max.ms",
    "socket.connection.setup.timeout.ms",
    "socket.keepalive.enable",
    "socket.max.fails",
    "socket.nagle.disable",
    "socket.receive.buffer.bytes",
    "socket.send.buffer.bytes",
    "socket.timeout.ms",
    "ssl.ca.certificate.stores",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.certificate.pem",
    "ssl.cipher.suites",
    "ssl.crl.location",
    "ssl.curves.list",
    "ssl.endpoint.identification.algorithm",
    "ssl.engine.id",
    "ssl.engine.location",
    "ssl.providers",
    "ssl.sigalgs.list",
    "statistics.interval.ms",
    "sticky.partitioning.linger.ms",
    "topic.blacklist",
    "topic.metadata.propagation.max.ms",
    "topic.metadata.refresh.fast.cnt",
    "topic.metadata.refresh.fast.interval.ms",
    "topic.metadata.refresh.interval.ms",
    "topic.metadata.refresh.sparse",
    "transaction.timeout.ms",
    "transactional.id",
];

/// Whether a librdkafka pass-through property holds a secret, so its value
/// is never printed (by `check-config`) or put in a message.
///
/// A key is a secret when any of these holds (ASCII case ignored):
/// 1. librdkafka flags it sensitive (`sasl.username`, `sasl.password`,
///    `sasl.oauthbearer.client.secret`, `ssl.key.password`, ...);
/// 2. it is named like a secret: it contains `pass`, `pwd`, `secret`,
///    `token`, `cred`, `private`, `key`, `jaas`, `user`, `extension`,
///    `oauthbearer.config` or `kinit`, or has a segment starting with `auth`,
///    `pas` or `pw` (`_` and `-` count as `.`);
/// 3. it is not a librdkafka property known to hold no secret: a misspelt
///    key (`sasl.pasword`, `sasl.pwd`) or one this version does not know.
///
/// Only well-known, non-secret properties are shown; the one exception to
/// rule 2 is `sasl.oauthbearer.token.endpoint.url`, shown through
/// [`mask_url`]. Masking a harmless key (a path like `ssl.key.location`,
/// a typo of `linger.ms`) costs a look at the file; showing a password
/// costs a credential rotation.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SENSITIVE.contains(&k.as_str())
        || (named_like_secret(&k) && !SHOWN_DESPITE_NAME.contains(&k.as_str()))
        || !PUBLIC.contains(&k.as_str())
}

/// How a pass-through property's value is shown: [`MASK`] for a secret,
/// else with any URL's secrets masked.
pub fn mask_property(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        MASK.to_owned()
    } else {
        mask_url(value)
    }
}

/// Rule 2 of [`is_secret_key`], on a lower-cased key.
fn named_like_secret(key: &str) -> bool {
    let k = key.replace(['_', '-'], ".");
    SECRET_FRAGMENTS.iter().any(|f| k.contains(f))
        || k.split('.')
            .any(|seg| SECRET_SEGMENT_PREFIXES.iter().any(|p| seg.starts_with(p)))
}

/// `value` with what a URL can carry masked: the user-info part
/// (`user:password@`), every query parameter value and the fragment (where
/// `?token=`, `?access_token=`, `?sig=` and OAuth's `#access_token=` go).
/// Scheme, host, port and path stay readable. A value without `://` is
/// returned as it is.
pub fn mask_url(value: &str) -> String {
    let Some(scheme_end) = value.find("://").map(|i| i + 3) else {
        return value.to_owned();
    };
    let (scheme, rest) = value.split_at(scheme_end);
    let (before_query, query, fragment) = split_query(rest);
    // The last `@` before the query ends any user-info, even one holding
    // a `/`; an `@` in the path masks the host too, which is the safe side.
    let location = match before_query.rfind('@') {
        Some(at) => format!("{MASK}@{}", &before_query[at + 1..]),
        None => before_query.to_owned(),
    };
    let mut shown = format!("{scheme}{location}");
    if let Some(query) = query {
        shown.push('?');
        shown.push_str(&mask_query(query));
    }
    if let Some(fragment) = fragment {
        shown.push('#');
        if !fragment.is_empty() {
            shown.push_str(MASK);
        }
    }
    shown
}

/// `host/path?query#fragment` as its three parts.
fn split_query(rest: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (rest, None),
    };
    match rest.split_once('?') {
        Some((before, query)) => (before, Some(query), fragment),
        None => (rest, None, fragment),
    }
}

/// `a=1&b=2&c` as `a=********&b=********&********`: parameter names stay,
/// values go (a bare parameter may itself be the token).
fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, "")) => format!("{name}="),
            Some((name, _)) => format!("{name}={MASK}"),
            None if param.is_empty() => String::new(),
            None => MASK.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_property_librdkafka_flags_sensitive_is_a_secret() {
        for k in SENSITIVE {
            assert!(is_secret_key(k), "{k}");
            assert!(is_secret_key(&k.to_ascii_uppercase()), "{k}");
        }
    }

    #[test]
    fn keys_named_like_secrets_and_misspelt_keys_are_secrets() {
        for k in [
            "sasl.pasword",
            "sasl.passwd",
            "sasl.pwd",
            "sasl.pw",
            "ssl.key.passwrd",
            "ssl.keystore.pasword",
            "sasl.oauthbearer.client.secrett",
            "sasl.oauthbearer.extensions",
            "sasl.oauthbearer.metadata.authentication.type",
            "sasl.jaas.config",
            "basic.auth.user.info",
            "schema.registry.api.key",
            "apikey",
            "sasl.kerberos.kinit.cmd",
            "sasl.kerberos.keytab",
            "ssl.keystore.location",
            "SASL_PASSWORD",
            "sasl-password",
            "no.such.property",
            "linger.msx",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn well_known_harmless_properties_are_shown() {
        for k in [
            "security.protocol",
            "sasl.mechanism",
            "ssl.ca.location",
            "ssl.certificate.pem",
            "linger.ms",
            "Linger.MS",
            "max.poll.interval.ms",
            "sasl.oauthbearer.method",
            "sasl.oauthbearer.client.id",
            "sasl.oauthbearer.token.endpoint.url",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn no_public_property_is_named_like_a_secret_unless_reviewed() {
        for k in PUBLIC {
            assert!(
                !named_like_secret(k) || SHOWN_DESPITE_NAME.contains(k),
                "{k} is named like a secret: review it, then list it in SHOWN_DESPITE_NAME"
            );
            assert!(!SENSITIVE.contains(k), "{k}");
        }
    }

    #[test]
    fn urls_keep_their_host_and_path_but_lose_credentials_and_query_values() {
        for (url, shown) in [
            (
                "https://idp.example/oauth2/token?access_token=t0k&scope=a",
                "https://idp.example/oauth2/token?access_token=********&scope=********",
            ),
            (
                "https://u:p4ss@registry:8081/x?sig=abc&flag&empty=#frag",
                "https://********@registry:8081/x?sig=********&********&empty=#********",
            ),
            ("https://registry:8081", "https://registry:8081"),
            ("https://u:pa/ss@host/x", "https://********@host/x"),
            (
                "https://h?scope=a,b&token=c,d",
                "https://h?scope=********&token=********",
            ),
            ("not a url?token=x", "not a url?token=x"),
        ] {
            assert_eq!(mask_url(url), shown, "{url}");
        }
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["security.protocol", "sasl.mechanism", "ssl.ca.location"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
