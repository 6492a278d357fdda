//! Kafka record headers as bytes. A header key is a string in the protocol,
//! but a broken or hostile producer can send any bytes, and rdkafka's own
//! accessors unwrap the key's UTF-8 conversion (a panic on a non-UTF-8 key:
//! a record that crash-loops the process). So headers are read and written
//! here through librdkafka's C API, never through those accessors.
//!
//! One limit of that API: a key is returned as a C string, so a key holding
//! a NUL byte is read up to the NUL (`x\0y` reads as `x`). Kafka's Java
//! client cannot produce such keys; a dead letter keeps keys byte for byte
//! up to a NUL.

use std::ffi::{CStr, c_char, c_void};
use std::ptr;

use rdkafka::Message;
use rdkafka::bindings as rdsys;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, OwnedHeaders};

use crate::core::headers::HeaderLookup;

/// One header: key and value bytes, as they came.
pub type RawHeader<'m> = (&'m [u8], Option<&'m [u8]>);

/// Headers a consumed record's view holds without an allocation: a
/// `receive`-fed record carries two, most producers' a handful.
const INLINE_HEADERS: usize = 8;

/// The headers of one consumed record, borrowed from it.
#[derive(Debug)]
pub struct InHeaders<'m> {
    /// In record order, when they fit.
    inline: [RawHeader<'m>; INLINE_HEADERS],
    len: usize,
    /// Every header, when they do not.
    spilled: Vec<RawHeader<'m>>,
}

impl<'m> InHeaders<'m> {
    /// Reads every header of `message` without interpreting it.
    pub fn of(message: &'m BorrowedMessage<'_>) -> Self {
        let mut headers = InHeaders {
            inline: [(&[], None); INLINE_HEADERS],
            len: 0,
            spilled: Vec::new(),
        };
        let Some(borrowed) = message.headers() else {
            return headers;
        };
        let native = std::ptr::from_ref(borrowed).cast::<rdsys::rd_kafka_headers_t>();
        // SAFETY: a `BorrowedHeaders` reference is a view of a live native
        // headers object (that is how rdkafka defines it).
        let count = unsafe { rdsys::rd_kafka_header_cnt(native) };
        if count > INLINE_HEADERS {
            headers.spilled = header_pairs(borrowed);
            return headers;
        }
        // SAFETY: as above; the headers live as long as `message`.
        for pair in (0..count).filter_map(|i| unsafe { header_at(native, i) }) {
            if let Some(slot) = headers.inline.get_mut(headers.len) {
                *slot = pair;
                headers.len += 1;
            }
        }
        headers
    }

    /// The headers, in record order.
    pub fn pairs(&self) -> &[RawHeader<'m>] {
        match self.spilled.is_empty() {
            true => &self.inline[..self.len],
            false => &self.spilled,
        }
    }
}

/// Every header of `headers`, bytes as they are (rdkafka's `Headers::iter`
/// would panic on a key that is not UTF-8).
pub fn header_pairs(headers: &BorrowedHeaders) -> Vec<RawHeader<'_>> {
    let native = std::ptr::from_ref(headers).cast::<rdsys::rd_kafka_headers_t>();
    // SAFETY: a `BorrowedHeaders` reference is a view of a live native
    // headers object (that is how rdkafka defines it).
    let count = unsafe { rdsys::rd_kafka_header_cnt(native) };
    (0..count)
        .filter_map(|i| unsafe { header_at(native, i) })
        .collect()
}

/// SAFETY: `headers` must be valid for 'm.
unsafe fn header_at<'m>(
    headers: *const rdsys::rd_kafka_headers_t,
    idx: usize,
) -> Option<RawHeader<'m>> {
    let mut name: *const c_char = ptr::null();
    let mut value: *const c_void = ptr::null();
    let mut size: usize = 0;
    // SAFETY: out-pointers are valid; librdkafka fills them with pointers
    // into `headers` (the name NUL-terminated).
    let err =
        unsafe { rdsys::rd_kafka_header_get_all(headers, idx, &mut name, &mut value, &mut size) };
    if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
        return None;
    }
    // SAFETY: as above; `value` is `size` bytes, or null for a null value.
    let key = unsafe { CStr::from_ptr(name) }.to_bytes();
    let value =
        (!value.is_null()).then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
    Some((key, value))
}

/// Headers as borrowed byte pairs, for the normaliser's look-ups.
pub struct HeaderSlice<'a>(pub &'a [RawHeader<'a>]);

impl HeaderLookup for HeaderSlice<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| *v)
    }

    fn count(&self, name: &str) -> usize {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .count()
    }
}

/// librdkafka headers holding `pairs` byte for byte (keys need not be UTF-8).
pub fn owned_headers<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, Option<V>)]) -> OwnedHeaders {
    owned_headers_of(
        pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref().map(AsRef::as_ref))),
    )
}

/// [`owned_headers`] from an iterator of borrowed pairs.
pub fn owned_headers_of<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> OwnedHeaders {
    let headers = OwnedHeaders::new_with_capacity(pairs.len());
    // `as_borrowed` is a view of the same native headers object.
    let native = std::ptr::from_ref(headers.as_borrowed())
        .cast_mut()
        .cast::<rdsys::rd_kafka_headers_t>();
    // An empty slice's pointer is dangling; librdkafka memcpys 0 bytes from
    // it, which C does not promise is harmless: give it a real byte instead.
    static ONE_BYTE: [u8; 1] = [0];
    let nonempty = |b: &[u8]| {
        if b.is_empty() {
            ONE_BYTE.as_ptr()
        } else {
            b.as_ptr()
        }
    };
    for (key, value) in pairs {
        let (value_ptr, value_len) = match value {
            Some(v) => (nonempty(v).cast::<c_void>(), v.len() as isize),
            None => (ptr::null(), 0),
        };
        // SAFETY: `native` is a writable headers object we own; librdkafka
        // copies the key and value bytes. Adding to a fresh object cannot
        // fail (it fails only for read-only headers).
        unsafe {
            rdsys::rd_kafka_header_add(
                native,
                nonempty(key).cast::<c_char>(),
                key.len() as isize,
                value_ptr,
                value_len,
            );
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    #[test]
    fn owned_headers_keep_non_utf8_keys_and_null_values() {
        let pairs: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
            (b"ok".to_vec(), Some(b"v".to_vec())),
            (b"\xff\xfe".to_vec(), Some(b"\x00\x01".to_vec())),
            (b"nul".to_vec(), None),
        ];
        let headers = owned_headers(&pairs);
        assert_eq!(headers.count(), 3);
        let native = std::ptr::from_ref(headers.as_borrowed()).cast::<rdsys::rd_kafka_headers_t>();
        let read: Vec<_> = (0..3)
            .map(|i| unsafe { header_at(native, i) }.unwrap())
            .collect();
        assert_eq!(read[0], (&b"ok"[..], Some(&b"v"[..])));
        assert_eq!(read[1], (&b"\xff\xfe"[..], Some(&b"\x00\x01"[..])));
        assert_eq!(read[2], (&b"nul"[..], None));
    }
}
