//! Read access to a record's headers, whichever carries them (a Kafka
//! record, an HTTP request, a test's pairs): the normaliser and the
//! signature checks both read headers through this one trait, so it sits
//! below both.

/// Read access to a record's headers.
pub trait HeaderLookup {
    /// The value of the first header named `name` (ASCII case ignored).
    fn header(&self, name: &str) -> Option<&[u8]>;

    /// How many headers are named `name` (ASCII case ignored): signature
    /// checks refuse a header that appears twice.
    fn count(&self, name: &str) -> usize {
        usize::from(self.header(name).is_some())
    }
}

/// No headers at all.
impl HeaderLookup for () {
    fn header(&self, _name: &str) -> Option<&[u8]> {
        None
    }
}

/// Headers as (name, value) pairs.
impl<K: AsRef<str>, V: AsRef<[u8]>> HeaderLookup for [(K, V)] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    fn count(&self, name: &str) -> usize {
        self.iter()
            .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .count()
    }
}
