//! The few CBOR encodings OSCORE needs (RFC 8949 §3): unsigned/negative ints, bstr, tstr,
//! array headers and nil. Only encoding: OSCORE never parses CBOR from the wire.

fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let m = major << 5;
    match value {
        0..=23 => out.push(m | value as u8),
        24..=0xff => {
            out.push(m | 24);
            out.push(value as u8);
        }
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

pub(crate) fn uint(out: &mut Vec<u8>, v: u64) {
    head(out, 0, v);
}

pub(crate) fn int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        head(out, 0, v as u64);
    } else {
        head(out, 1, (-1 - v) as u64);
    }
}

pub(crate) fn bstr(out: &mut Vec<u8>, b: &[u8]) {
    head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

pub(crate) fn tstr(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn array(out: &mut Vec<u8>, n: u64) {
    head(out, 4, n);
}

pub(crate) fn nil(out: &mut Vec<u8>) {
    out.push(0xf6);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let mut v = Vec::new();
        uint(&mut v, 10);
        uint(&mut v, 24);
        uint(&mut v, 256);
        int(&mut v, -7);
        bstr(&mut v, &[1]);
        tstr(&mut v, "IV");
        array(&mut v, 5);
        nil(&mut v);
        assert_eq!(hex::encode(v), "0a181819010026410162495685f6");
    }
}
