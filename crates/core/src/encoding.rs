//! Base64 (standard and URL-safe) and hex: JWTs and JWKS are base64url, IAM's credential
//! report and the `BinaryEquals` condition are standard base64, tokens are base64url of
//! random bytes, ids are hex. One implementation serves them all.

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Which base64 a text is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base64 {
    /// RFC 4648 §4 (`+/`); padding optional when decoding, written when encoding.
    Standard,
    /// RFC 4648 §5 (`-_`), never padded: JWTs, JWKS, tokens. Decoding is strict: padding,
    /// other characters and non-zero trailing bits are refused, so one value has one text.
    UrlNoPad,
}

impl Base64 {
    fn alphabet(self) -> &'static [u8; 64] {
        match self {
            Base64::Standard => STANDARD,
            Base64::UrlNoPad => URL_SAFE,
        }
    }

    fn value(self, c: u8) -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' if self == Base64::Standard => 62,
            b'/' if self == Base64::Standard => 63,
            b'-' if self == Base64::UrlNoPad => 62,
            b'_' if self == Base64::UrlNoPad => 63,
            _ => return None,
        };
        Some(u32::from(v))
    }

    pub fn encode(self, bytes: &[u8]) -> String {
        let alphabet = self.alphabet();
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            }
            if self == Base64::Standard {
                for _ in chunk.len()..3 {
                    out.push('=');
                }
            }
        }
        out
    }

    /// Decode `text`; `None` when it is not this base64. Standard base64 may carry
    /// surrounding whitespace and padding.
    pub fn decode(self, text: &str) -> Option<Vec<u8>> {
        let text = match self {
            Base64::Standard => text.trim().trim_end_matches('='),
            Base64::UrlNoPad => text,
        };
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in text.bytes() {
            acc = (acc << 6) | self.value(c)?;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        // Six leftover bits cannot end a base64 text; in strict mode the unused low bits of
        // the last character must be zero.
        let strict_tail_ok = self == Base64::Standard || acc == 0;
        (bits < 6 && strict_tail_ok).then_some(out)
    }
}

/// Decode `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte): how IAM
/// returns policy documents and S3 event notifications carry keys. `None` when an escape is
/// broken or the bytes are not UTF-8.
pub fn form_decode(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        // RFC 4648 §10.
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(Base64::Standard.encode(plain.as_bytes()), enc);
            assert_eq!(Base64::Standard.decode(enc).unwrap(), plain.as_bytes());
            let url = enc.trim_end_matches('=');
            assert_eq!(Base64::UrlNoPad.encode(plain.as_bytes()), url);
            assert_eq!(Base64::UrlNoPad.decode(url).unwrap(), plain.as_bytes());
        }
        assert_eq!(Base64::UrlNoPad.decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(Base64::Standard.decode(" +/8= ").unwrap(), [0xfb, 0xff]);
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(form_decode("a+b%3D%7B").as_deref(), Some("a b={"));
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("%zz"), None);
    }

    #[test]
    fn refuses_what_is_not_base64() {
        assert_eq!(Base64::UrlNoPad.decode("Zg=="), None, "padding");
        assert_eq!(Base64::UrlNoPad.decode("+/8"), None, "standard alphabet");
        assert_eq!(Base64::Standard.decode("-_8"), None, "url alphabet");
        assert_eq!(Base64::Standard.decode("Z"), None, "six bits");
        assert_eq!(
            Base64::UrlNoPad.decode("Zh"),
            None,
            "non-zero trailing bits"
        );
        assert_eq!(Base64::UrlNoPad.decode("Zg\n"), None, "whitespace");
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for b in [Base64::Standard, Base64::UrlNoPad] {
                prop_assert_eq!(b.decode(&b.encode(&bytes)).unwrap(), bytes.clone());
            }
        }
    }
}
