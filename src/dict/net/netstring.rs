//! Netstrings (`<length>:<bytes>,`), the framing of the socketmap protocol,
//! decoded as Postfix's `util/netstring.c` reads them: the length is
//! decimal digits up to `:`; a byte that is neither is a format error; a
//! length past the caller's limit (checked at the `:`, or past what a
//! signed size can hold while reading digits) is a size error; the
//! payload must be followed by `,`. Pure: the caller reads, this decides
//! whether the bytes so far are a whole netstring, need more, or are bad.

/// Why bytes are not a netstring; the texts are Postfix's
/// `netstring_strerror()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NetstringError {
    #[error("input format error")]
    Format,
    #[error("input exceeds size limit")]
    Size,
}

/// A whole netstring at the start of a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// Where the payload is in the buffer.
    pub(crate) payload: std::ops::Range<usize>,
    /// Bytes the netstring took, terminator included.
    pub(crate) consumed: usize,
}

/// Append `payload` as one netstring.
pub(crate) fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(b',');
}

/// The netstring at the start of `buf`: `Ok(None)` while more bytes are
/// needed to decide. `limit` bounds the payload length.
pub(crate) fn decode(buf: &[u8], limit: usize) -> Result<Option<Decoded>, NetstringError> {
    let mut len: usize = 0;
    let mut colon = None;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b':' => {
                colon = Some(i);
                break;
            }
            b'0'..=b'9' => {
                // Postfix's bound is SSIZE_T_MAX
                len = len
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(usize::from(b - b'0')))
                    .filter(|l| isize::try_from(*l).is_ok())
                    .ok_or(NetstringError::Size)?;
            }
            _ => return Err(NetstringError::Format),
        }
    }
    let Some(colon) = colon else { return Ok(None) };
    if len > limit {
        return Err(NetstringError::Size);
    }
    let start = colon + 1;
    let end = start + len;
    match buf.get(end) {
        None => Ok(None),
        Some(b',') => Ok(Some(Decoded { payload: start..end, consumed: end + 1 })),
        Some(_) => Err(NetstringError::Format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(buf: &[u8], limit: usize) -> Result<Option<(&[u8], usize)>, NetstringError> {
        decode(buf, limit).map(|d| d.map(|d| (&buf[d.payload], d.consumed)))
    }

    #[test]
    fn round_trip_and_leftovers() {
        for payload in [&b""[..], b"x", b"OK a value, with: colons", &[0u8, 255, b',', b':']] {
            let mut buf = Vec::new();
            encode(payload, &mut buf);
            let n = buf.len();
            assert_eq!(whole(&buf, 100), Ok(Some((payload, n))));
            buf.extend_from_slice(b"3:abc,");
            assert_eq!(whole(&buf, 100), Ok(Some((payload, n))), "extra bytes are left over");
        }
        assert_eq!(whole(b":,", 0), Ok(Some((&b""[..], 2))), "an empty length is 0, as Postfix reads it");
    }

    #[test]
    fn every_prefix_needs_more_bytes() {
        let buf = b"11:OK a value,";
        for n in 0..buf.len() {
            assert_eq!(decode(&buf[..n], 100), Ok(None), "{n}");
        }
    }

    #[test]
    fn malformed_input_is_a_format_error_as_soon_as_it_shows() {
        assert_eq!(decode(b"1x", 100), Err(NetstringError::Format));
        assert_eq!(decode(b" 1:a,", 100), Err(NetstringError::Format));
        assert_eq!(decode(b"-1:", 100), Err(NetstringError::Format));
        assert_eq!(decode(b"3:abc;", 100), Err(NetstringError::Format));
        assert_eq!(decode(b"3:abcd", 100), Err(NetstringError::Format));
        assert_eq!(decode(b"OK value", 100), Err(NetstringError::Format));
    }

    #[test]
    fn lengths_past_the_limit_are_size_errors() {
        assert_eq!(decode(b"101:", 100), Err(NetstringError::Size));
        assert_eq!(decode(b"100:", 100), Ok(None));
        assert_eq!(decode(b"101", 100), Ok(None), "the limit applies at the colon, as in Postfix");
        assert_eq!(decode(b"99999999999999999999999", usize::MAX), Err(NetstringError::Size));
        assert_eq!(NetstringError::Size.to_string(), "input exceeds size limit");
        assert_eq!(NetstringError::Format.to_string(), "input format error");
    }
}
