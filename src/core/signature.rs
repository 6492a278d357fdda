//! Webhook authentication, pure: Standard Webhooks (Svix) signatures over
//! the raw body, and legacy `Authorization` credentials. No clock and no
//! I/O: the caller passes "now" (the wall clock in `receive`, the ingest
//! record's timestamp in `run`).
//!
//! A signed delivery carries `webhook-id`, `webhook-timestamp` (seconds
//! since the epoch) and `webhook-signature`: space-separated `v1,<base64>`
//! entries, each an HMAC-SHA256 of `"{id}.{timestamp}.{body}"` under the
//! key of a `whsec_<base64>` secret. Several entries appear while Codat
//! rotates a secret, and several secrets may be configured here for the
//! same reason: a delivery is authentic when any entry matches any secret.
//! Some deliveries name the headers `svix-id`, `svix-timestamp` and
//! `svix-signature` instead; the `webhook-` set is used when
//! `webhook-signature` is present, else the `svix-` set, never a mix.
//!
//! Every comparison of a MAC or credential is constant-time
//! ([`Mac::verify_slice`]), and the work per request is bounded: one HMAC
//! of the body per secret, and at most [`MAX_SIGNATURES`] entries looked at.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::core::headers::HeaderLookup;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Shortest and longest signing key, bytes (the Standard Webhooks
/// specification's range; Svix's keys are 24 bytes).
pub const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Most `v1,` entries looked at in one signature header: a delivery has
/// one, two while a secret rotates. A header with more is refused
/// ([`SignatureFailure::TooManySignatures`]) without computing anything.
pub const MAX_SIGNATURES: usize = 16;

/// Longest `webhook-id` accepted, bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The default tolerance of `webhook-timestamp` against "now", both ways.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The three headers of a signed delivery, `webhook-` and `svix-` named.
const HEADER_SETS: [[&str; 3]; 2] = [
    ["webhook-id", "webhook-timestamp", "webhook-signature"],
    ["svix-id", "svix-timestamp", "svix-signature"],
];

/// Base64 that takes padding or its absence (Svix's libraries pad what
/// they are given before decoding).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a delivery is not authentic. Labels are a bounded set (metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureFailure {
    /// `webhook-id`, `webhook-timestamp` or `webhook-signature` (or their
    /// `svix-` names) is absent or empty.
    MissingHeader,
    /// One of them appears more than once: which one counts is ambiguous.
    DuplicateHeader,
    /// The id is too long, or the timestamp is not whole seconds.
    MalformedHeader,
    /// The timestamp is older than the tolerance.
    TooOld,
    /// The timestamp is further in the future than the tolerance.
    TooNew,
    /// More than [`MAX_SIGNATURES`] entries.
    TooManySignatures,
    /// No entry matches any configured secret.
    NoMatch,
    /// Legacy credentials: the `Authorization` header is absent or wrong.
    BadCredentials,
}

impl SignatureFailure {
    /// Every failure, for metrics pre-registration.
    pub const ALL: [SignatureFailure; 8] = [
        SignatureFailure::MissingHeader,
        SignatureFailure::DuplicateHeader,
        SignatureFailure::MalformedHeader,
        SignatureFailure::TooOld,
        SignatureFailure::TooNew,
        SignatureFailure::TooManySignatures,
        SignatureFailure::NoMatch,
        SignatureFailure::BadCredentials,
    ];

    /// The stable label (`reason` of `receive_auth_failures_total`).
    pub fn label(self) -> &'static str {
        match self {
            SignatureFailure::MissingHeader => "missing_header",
            SignatureFailure::DuplicateHeader => "duplicate_header",
            SignatureFailure::MalformedHeader => "malformed_header",
            SignatureFailure::TooOld => "timestamp_too_old",
            SignatureFailure::TooNew => "timestamp_too_new",
            SignatureFailure::TooManySignatures => "too_many_signatures",
            SignatureFailure::NoMatch => "no_match",
            SignatureFailure::BadCredentials => "bad_credentials",
        }
    }

    /// A sentence for people (names headers, never quotes them).
    pub fn message(self) -> &'static str {
        match self {
            SignatureFailure::MissingHeader => {
                "webhook-id, webhook-timestamp or webhook-signature (or svix-*) is missing or empty"
            }
            SignatureFailure::DuplicateHeader => "a signature header appears more than once",
            SignatureFailure::MalformedHeader => {
                "webhook-id is too long or webhook-timestamp is not whole seconds"
            }
            SignatureFailure::TooOld => "webhook-timestamp is older than the tolerance",
            SignatureFailure::TooNew => "webhook-timestamp is further ahead than the tolerance",
            SignatureFailure::TooManySignatures => "webhook-signature lists too many signatures",
            SignatureFailure::NoMatch => "no signature matches a configured secret",
            SignatureFailure::BadCredentials => "the Authorization header is missing or wrong",
        }
    }
}

impl fmt::Display for SignatureFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A signing key decoded from a `whsec_` secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

/// Why a secret is not a Standard Webhooks secret (never quotes it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "is not a Standard Webhooks secret (whsec_ followed by the base64 of {min} to {max} bytes)",
    min = KEY_BYTES.start(),
    max = KEY_BYTES.end()
)]
pub struct BadSecret;

impl SigningKey {
    /// Decodes `whsec_<base64>` (the prefix may be left out, as Codat's
    /// and Svix's libraries allow).
    pub fn parse(secret: &str) -> Result<SigningKey, BadSecret> {
        let text = secret.trim();
        let text = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = LENIENT_BASE64.decode(text).map_err(|_| BadSecret)?;
        if KEY_BYTES.contains(&key.len()) {
            Ok(SigningKey(key))
        } else {
            Err(BadSecret)
        }
    }

    /// The MAC of a delivery under this key, ready to compare.
    fn mac(&self, id: &[u8], timestamp: &[u8], body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; KEY_BYTES keeps this from failing.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable_key(),
        };
        mac.update(id);
        mac.update(b".");
        mac.update(timestamp);
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// HMAC accepts every key length; kept out of line so no caller panics.
#[cold]
fn unreachable_key() -> HmacSha256 {
    // An HMAC under an empty key, which can match nothing a real key made.
    <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default())
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(********)")
    }
}

/// Checks Standard Webhooks signatures against the configured secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    keys: Vec<SigningKey>,
    tolerance_secs: i64,
}

/// The signed headers of one delivery, once found and unambiguous.
struct Signed<'h> {
    id: &'h [u8],
    timestamp: &'h [u8],
    signatures: &'h [u8],
}

impl Verifier {
    /// A verifier accepting a signature by any of `keys`, with the
    /// timestamp within `tolerance_secs` of "now" either way.
    pub fn new(keys: Vec<SigningKey>, tolerance_secs: u64) -> Verifier {
        Verifier {
            keys,
            tolerance_secs: i64::try_from(tolerance_secs).unwrap_or(i64::MAX),
        }
    }

    /// Whether `body` with `headers` was signed by a configured secret at
    /// a time within the tolerance of `now_secs`.
    pub fn verify<H: HeaderLookup + ?Sized>(
        &self,
        body: &[u8],
        headers: &H,
        now_secs: i64,
    ) -> Result<(), SignatureFailure> {
        let signed = self.signed(headers, now_secs)?;
        let candidates = candidates(signed.signatures)?;
        let mut matched = false;
        for key in &self.keys {
            let mac = key.mac(signed.id, signed.timestamp, body);
            for candidate in &candidates {
                // Every candidate is compared (no early exit), in constant time.
                matched |= mac.clone().verify_slice(candidate).is_ok();
            }
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureFailure::NoMatch)
        }
    }

    /// Every check [`Verifier::verify`] makes before it reads the body:
    /// the headers are there once each, the timestamp within the tolerance,
    /// not too many signatures. A receiver refuses on these before it
    /// reads a body at all.
    pub fn check_headers<H: HeaderLookup + ?Sized>(
        &self,
        headers: &H,
        now_secs: i64,
    ) -> Result<(), SignatureFailure> {
        let signed = self.signed(headers, now_secs)?;
        candidates(signed.signatures).map(drop)
    }

    fn signed<'h, H: HeaderLookup + ?Sized>(
        &self,
        headers: &'h H,
        now_secs: i64,
    ) -> Result<Signed<'h>, SignatureFailure> {
        let signed = signed_headers(headers)?;
        if signed.id.len() > MAX_ID_BYTES {
            return Err(SignatureFailure::MalformedHeader);
        }
        let sent_secs = parse_seconds(signed.timestamp).ok_or(SignatureFailure::MalformedHeader)?;
        // i128: no timestamp or tolerance can overflow the comparison.
        let age = i128::from(now_secs) - i128::from(sent_secs);
        if age > i128::from(self.tolerance_secs) {
            return Err(SignatureFailure::TooOld);
        }
        if -age > i128::from(self.tolerance_secs) {
            return Err(SignatureFailure::TooNew);
        }
        Ok(signed)
    }
}

/// The `webhook-` set when `webhook-signature` is present, else the
/// `svix-` set; each header exactly once and non-empty.
fn signed_headers<H: HeaderLookup + ?Sized>(headers: &H) -> Result<Signed<'_>, SignatureFailure> {
    let set = if headers.header(HEADER_SETS[0][2]).is_some() {
        HEADER_SETS[0]
    } else {
        HEADER_SETS[1]
    };
    let mut values = [&[][..]; 3];
    for (value, name) in values.iter_mut().zip(set) {
        if headers.count(name) > 1 {
            return Err(SignatureFailure::DuplicateHeader);
        }
        *value = headers
            .header(name)
            .map(trim_ascii)
            .filter(|v| !v.is_empty())
            .ok_or(SignatureFailure::MissingHeader)?;
    }
    let [id, timestamp, signatures] = values;
    Ok(Signed {
        id,
        timestamp,
        signatures,
    })
}

/// The decoded `v1` signatures of a header (other versions and entries
/// that do not decode are skipped; they can match nothing).
fn candidates(header: &[u8]) -> Result<Vec<Vec<u8>>, SignatureFailure> {
    let mut out = Vec::new();
    for (n, entry) in header
        .split(|&b| b == b' ')
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        if n >= MAX_SIGNATURES {
            return Err(SignatureFailure::TooManySignatures);
        }
        let Some(encoded) = entry.strip_prefix(b"v1,") else {
            continue;
        };
        // A SHA-256 MAC is 44 characters of base64; anything much longer
        // cannot be one, so is not decoded.
        if encoded.len() > 64 {
            continue;
        }
        if let Ok(sig) = general_purpose::STANDARD.decode(encoded) {
            out.push(sig);
        }
    }
    Ok(out)
}

/// Whole seconds since the epoch, as decimal digits (at most 18 of them).
fn parse_seconds(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn trim_ascii(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// Legacy webhooks' `Authorization` values (`Basic ...` or `Bearer ...`),
/// kept as keyed digests so the check is constant-time and the values
/// are not held.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    digests: Vec<[u8; 32]>,
}

/// The key the credential digests are made with: they only need to be
/// compared, never reversed, so a fixed key serves.
const CREDENTIAL_KEY: &[u8] = b"codat-stream authorization check";

/// Why an `Authorization` value cannot be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a whole Authorization header value: \"Basic <base64>\" or \"Bearer <token>\"")]
pub struct BadCredential;

impl Credentials {
    /// Accepts any of `values`, each a whole header value.
    pub fn new<S: AsRef<str>>(values: &[S]) -> Result<Credentials, BadCredential> {
        let mut digests = Vec::with_capacity(values.len());
        for v in values {
            let v = v.as_ref().trim();
            let (scheme, rest) = v.split_once(' ').ok_or(BadCredential)?;
            let known = ["basic", "bearer"]
                .iter()
                .any(|s| scheme.eq_ignore_ascii_case(s));
            if !known || rest.trim().is_empty() {
                return Err(BadCredential);
            }
            digests.push(credential_mac(v.as_bytes()).finalize().into_bytes().into());
        }
        Ok(Credentials { digests })
    }

    /// Credentials of those `values` that are valid, the others left out
    /// (configuration validation reports them).
    pub fn valid_of<S: AsRef<str>>(values: &[S]) -> Credentials {
        let digests = values
            .iter()
            .filter_map(|v| Credentials::new(&[v]).ok())
            .flat_map(|c| c.digests)
            .collect();
        Credentials { digests }
    }

    /// Whether `headers` carry one of the values (exactly one
    /// `Authorization` header, compared in constant time).
    pub fn check<H: HeaderLookup + ?Sized>(&self, headers: &H) -> Result<(), SignatureFailure> {
        if headers.count("authorization") != 1 {
            return Err(SignatureFailure::BadCredentials);
        }
        let presented = headers
            .header("authorization")
            .map(trim_ascii)
            .ok_or(SignatureFailure::BadCredentials)?;
        let mac = credential_mac(presented);
        let mut matched = false;
        for digest in &self.digests {
            matched |= mac.clone().verify_slice(digest).is_ok();
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureFailure::BadCredentials)
        }
    }
}

fn credential_mac(value: &[u8]) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(CREDENTIAL_KEY) {
        Ok(mac) => mac,
        Err(_) => unreachable_key(),
    };
    mac.update(value);
    mac
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({} values, ********)", self.digests.len())
    }
}

/// Signs like Codat (Svix) does: the `v1,<base64>` entry for a delivery.
/// For tests and examples; the receiver only verifies.
pub fn sign(key: &SigningKey, id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let ts = timestamp_secs.to_string();
    let mac = key.mac(id.as_bytes(), ts.as_bytes(), body);
    format!(
        "v1,{}",
        general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own test vector.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn verifier(secrets: &[&str]) -> Verifier {
        let keys = secrets
            .iter()
            .map(|s| SigningKey::parse(s).unwrap())
            .collect();
        Verifier::new(keys, DEFAULT_TOLERANCE_SECS)
    }

    fn headers(id: &str, ts: &str, sig: &str) -> Vec<(String, Vec<u8>)> {
        vec![
            ("webhook-id".into(), id.into()),
            ("webhook-timestamp".into(), ts.into()),
            ("webhook-signature".into(), sig.into()),
        ]
    }

    #[test]
    fn the_specifications_test_vector_verifies() {
        let key = SigningKey::parse(SPEC_SECRET).unwrap();
        assert_eq!(sign(&key, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
        let h = headers(SPEC_ID, &SPEC_TS.to_string(), SPEC_SIG);
        assert_eq!(
            verifier(&[SPEC_SECRET]).verify(SPEC_BODY, &h[..], SPEC_TS),
            Ok(())
        );
    }

    #[test]
    fn tampering_wrong_secrets_and_time_are_refused() {
        let v = verifier(&[SPEC_SECRET]);
        let ts = SPEC_TS.to_string();
        let h = headers(SPEC_ID, &ts, SPEC_SIG);
        assert_eq!(
            v.verify(br#"{"test": 2432232315}"#, &h[..], SPEC_TS),
            Err(SignatureFailure::NoMatch)
        );
        let other = verifier(&["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]);
        assert_eq!(
            other.verify(SPEC_BODY, &h[..], SPEC_TS),
            Err(SignatureFailure::NoMatch)
        );
        assert_eq!(
            v.verify(SPEC_BODY, &h[..], SPEC_TS + 301),
            Err(SignatureFailure::TooOld)
        );
        assert_eq!(v.verify(SPEC_BODY, &h[..], SPEC_TS + 300), Ok(()));
        assert_eq!(
            v.verify(SPEC_BODY, &h[..], SPEC_TS - 301),
            Err(SignatureFailure::TooNew)
        );
        assert_eq!(v.verify(SPEC_BODY, &h[..], SPEC_TS - 300), Ok(()));
        // The id and timestamp are signed too.
        let h = headers("msg_other", &ts, SPEC_SIG);
        assert_eq!(
            v.verify(SPEC_BODY, &h[..], SPEC_TS),
            Err(SignatureFailure::NoMatch)
        );
        let h = headers(SPEC_ID, &(SPEC_TS + 1).to_string(), SPEC_SIG);
        assert_eq!(
            v.verify(SPEC_BODY, &h[..], SPEC_TS),
            Err(SignatureFailure::NoMatch)
        );
        for extreme in [i64::MIN, i64::MAX] {
            assert!(v.verify(SPEC_BODY, &h[..], extreme).is_err());
        }
    }

    #[test]
    fn rotation_either_secret_and_any_entry_and_svix_names() {
        let v = verifier(&["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", SPEC_SECRET]);
        let ts = SPEC_TS.to_string();
        let both = format!("v1,bm90IGl0 {SPEC_SIG} v2,xyz");
        let h = headers(SPEC_ID, &ts, &both);
        assert_eq!(v.verify(SPEC_BODY, &h[..], SPEC_TS), Ok(()));
        let svix: Vec<(String, Vec<u8>)> = vec![
            ("Svix-Id".into(), SPEC_ID.into()),
            ("svix-timestamp".into(), ts.clone().into()),
            ("svix-signature".into(), SPEC_SIG.into()),
        ];
        assert_eq!(v.verify(SPEC_BODY, &svix[..], SPEC_TS), Ok(()));
    }

    #[test]
    fn missing_duplicate_and_malformed_headers_are_refused() {
        let v = verifier(&[SPEC_SECRET]);
        let ts = SPEC_TS.to_string();
        let mut h = headers(SPEC_ID, &ts, SPEC_SIG);
        h.push(("webhook-signature".into(), SPEC_SIG.into()));
        assert_eq!(
            v.verify(SPEC_BODY, &h[..], SPEC_TS),
            Err(SignatureFailure::DuplicateHeader)
        );
        for drop in 0..3 {
            let mut h = headers(SPEC_ID, &ts, SPEC_SIG);
            h.remove(drop);
            assert_eq!(
                v.verify(SPEC_BODY, &h[..], SPEC_TS),
                Err(SignatureFailure::MissingHeader),
                "{drop}"
            );
        }
        for bad_ts in ["1614265330.5", "-1", "0x10", "99999999999999999999", "1 2"] {
            let h = headers(SPEC_ID, bad_ts, SPEC_SIG);
            assert_eq!(
                v.verify(SPEC_BODY, &h[..], SPEC_TS),
                Err(SignatureFailure::MalformedHeader),
                "{bad_ts}"
            );
        }
        for bad_sig in [
            "v1,!!!!",
            "v1,",
            "v1",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ] {
            let h = headers(SPEC_ID, &ts, bad_sig);
            assert_eq!(
                v.verify(SPEC_BODY, &h[..], SPEC_TS),
                Err(SignatureFailure::NoMatch),
                "{bad_sig}"
            );
        }
        let h = headers(&"i".repeat(MAX_ID_BYTES + 1), &ts, SPEC_SIG);
        assert_eq!(
            v.verify(SPEC_BODY, &h[..], SPEC_TS),
            Err(SignatureFailure::MalformedHeader)
        );
    }

    #[test]
    fn a_thousand_entries_are_refused_before_any_work() {
        let v = verifier(&[SPEC_SECRET]);
        let many = format!("{}{SPEC_SIG}", "v1,x ".repeat(999));
        let h = headers(SPEC_ID, &SPEC_TS.to_string(), &many);
        assert_eq!(
            v.verify(SPEC_BODY, &h[..], SPEC_TS),
            Err(SignatureFailure::TooManySignatures)
        );
    }

    #[test]
    fn secrets_must_decode_to_a_key_of_24_to_64_bytes() {
        assert!(SigningKey::parse(SPEC_SECRET).is_ok());
        assert!(SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        for bad in [
            "",
            "whsec_",
            "whsec_c2hvcnQ=",
            "whsec_not base64!",
            "hunter2",
        ] {
            let e = SigningKey::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
        let key = SigningKey::parse(SPEC_SECRET).unwrap();
        assert!(!format!("{key:?}").contains("MfKQ"));
    }

    #[test]
    fn credentials_match_exactly_one_authorization_header() {
        let c = Credentials::new(&["Basic dXNlcjpwYXNz", "Bearer tok-1"]).unwrap();
        let h = |v: &[&str]| -> Vec<(String, Vec<u8>)> {
            v.iter()
                .map(|v| ("Authorization".to_owned(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(c.check(&h(&["Bearer tok-1"])[..]), Ok(()));
        assert_eq!(c.check(&h(&["Basic dXNlcjpwYXNz"])[..]), Ok(()));
        for bad in [
            &["Bearer tok-2"][..],
            &[][..],
            &["Bearer tok-1", "Bearer tok-1"][..],
            &["tok-1"][..],
        ] {
            assert_eq!(
                c.check(&h(bad)[..]),
                Err(SignatureFailure::BadCredentials),
                "{bad:?}"
            );
        }
        for bad in ["tok", "Digest x", "Bearer ", "hunter2"] {
            assert!(Credentials::new(&[bad]).is_err(), "{bad}");
        }
        assert!(!format!("{c:?}").contains("tok-1"));
    }
}
