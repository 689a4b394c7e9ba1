//! Protobuf without its schema: the top-level fields of a message, by number, as far as they
//! parse — enough to show the names, numbers and texts of the kernel's values
//! (`StreamBackupTaskInfo`, `StreamBackupError`) without carrying kvproto.

/// A top-level protobuf field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Field {
    Varint(u64),
    Bytes(Vec<u8>),
}

impl Field {
    pub(super) fn text(&self) -> Option<String> {
        match self {
            Field::Bytes(b) => std::str::from_utf8(b)
                .ok()
                .filter(|s| !s.is_empty() && s.chars().all(|c| !c.is_control()))
                .map(str::to_owned),
            Field::Varint(_) => None,
        }
    }

    pub(super) fn number(&self) -> Option<u64> {
        match self {
            Field::Varint(n) => Some(*n),
            Field::Bytes(_) => None,
        }
    }
}

/// The top-level fields of a protobuf message, as far as they parse (no schema needed for
/// names and numbers; fixed-width fields are skipped).
pub(super) fn fields(mut b: &[u8]) -> Vec<(u64, Field)> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let Some(tag) = varint(&mut b) else { break };
        let (field, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => match varint(&mut b) {
                Some(n) => out.push((field, Field::Varint(n))),
                None => break,
            },
            2 => {
                let Some(len) = varint(&mut b).and_then(|l| usize::try_from(l).ok()) else {
                    break;
                };
                if len > b.len() {
                    break;
                }
                out.push((field, Field::Bytes(b[..len].to_vec())));
                b = &b[len..];
            }
            1 if b.len() >= 8 => b = &b[8..],
            5 if b.len() >= 4 => b = &b[4..],
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_strings_are_read_and_a_truncated_message_stops() {
        // field 2 = 150 (varint), field 4 = "lb1", then a length past the end.
        let b = [0x10, 0x96, 0x01, 0x22, 3, b'l', b'b', b'1', 0x2a, 9, b'x'];
        let f = fields(&b);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0], (2, Field::Varint(150)));
        assert_eq!(f[1].1.text().as_deref(), Some("lb1"));
    }
}
