//! An output record's headers in one buffer: two allocations per record
//! however many headers, instead of a key and a value buffer for each (an
//! envelope carries seven or more; the hot thread spent a good part of its
//! time in malloc and free on them).

/// Headers to produce, in order: keys and values packed in one buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutHeaders {
    bytes: Vec<u8>,
    /// Per header: its key's length, and its value's (`None`: a null value).
    entries: Vec<(usize, Option<usize>)>,
}

impl OutHeaders {
    /// Room for `headers` headers of `bytes` bytes in all.
    pub fn with_capacity(headers: usize, bytes: usize) -> Self {
        OutHeaders {
            bytes: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(headers),
        }
    }

    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.bytes.extend_from_slice(key);
        if let Some(v) = value {
            self.bytes.extend_from_slice(v);
        }
        self.entries.push((key.len(), value.map(<[u8]>::len)));
    }

    /// A header whose value `write` appends in place (no buffer of its own).
    pub fn push_with(&mut self, key: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        self.bytes.extend_from_slice(key);
        let start = self.bytes.len();
        write(&mut self.bytes);
        self.entries
            .push((key.len(), Some(self.bytes.len() - start)));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of keys and values.
    pub fn bytes_len(&self) -> usize {
        self.bytes.len()
    }

    /// The headers, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        packed(&self.bytes, &self.entries)
    }

    /// Empties it, keeping its buffers, with room for `headers` headers of
    /// `bytes` bytes: a record's headers written into the last one's.
    pub fn reset(&mut self, headers: usize, bytes: usize) {
        self.bytes.clear();
        self.bytes.reserve(bytes);
        self.entries.clear();
        self.entries.reserve(headers);
    }

    /// Capacity held, in bytes (for a bound on buffers kept for reuse).
    pub fn capacity_bytes(&self) -> usize {
        self.bytes.capacity()
            + self.entries.capacity() * std::mem::size_of::<(usize, Option<usize>)>()
    }

    /// The first header named `key`, byte for byte.
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// Headers packed as [`OutHeaders`] packs them: `bytes` holds each key then
/// its value, `entries` their lengths (`None`: a null value).
pub fn packed<'a>(
    bytes: &'a [u8],
    entries: &'a [(usize, Option<usize>)],
) -> impl ExactSizeIterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
    let mut at = 0;
    entries.iter().map(move |(k, v)| {
        let key = &bytes[at..at + k];
        at += k;
        let value = v.map(|v| {
            let value = &bytes[at..at + v];
            at += v;
            value
        });
        (key, value)
    })
}

impl OutHeaders {
    /// A copy of `pairs`, sized exactly: one allocation for the bytes and
    /// one for the entries (collecting grew the buffer several times).
    pub fn of(pairs: &[(&[u8], Option<&[u8]>)]) -> Self {
        let bytes = pairs
            .iter()
            .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len))
            .sum();
        let mut headers = OutHeaders::with_capacity(pairs.len(), bytes);
        for (k, v) in pairs {
            headers.push(k, *v);
        }
        headers
    }
}

impl<'a> FromIterator<(&'a [u8], Option<&'a [u8]>)> for OutHeaders {
    fn from_iter<I: IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>>(pairs: I) -> Self {
        let mut headers = OutHeaders::default();
        for (k, v) in pairs {
            headers.push(k, v);
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_back_in_order_with_null_and_empty_values_apart() {
        let mut h = OutHeaders::with_capacity(4, 32);
        h.push(b"a", Some(b"1"));
        h.push(b"null", None);
        h.push(b"empty", Some(b""));
        h.push_with(b"n", |b| b.extend_from_slice(b"7-x"));
        h.push(b"a", Some(b"2"));
        let all: Vec<_> = h.iter().collect();
        assert_eq!(
            all,
            [
                (&b"a"[..], Some(&b"1"[..])),
                (b"null", None),
                (b"empty", Some(b"")),
                (b"n", Some(b"7-x")),
                (b"a", Some(b"2")),
            ]
        );
        assert_eq!(h.len(), 5);
        assert_eq!(h.get(b"a"), Some(Some(&b"1"[..])), "the first of a name");
        assert_eq!(h.get(b"null"), Some(None));
        assert_eq!(h.get(b"none"), None);
        assert_eq!(h.bytes_len(), "a1nullemptyn7-xa2".len());
    }
}
