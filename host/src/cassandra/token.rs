//! Tokens: where Cassandra's default partitioner (`Murmur3Partitioner`) places an id on the ring,
//! computed here so that an id read from Elasticsearch is given to the range that owns it
//! without asking Cassandra.

use uuid::Uuid;

/// The token of a `uuid` partition key: the first half of the 128-bit Murmur3 hash (x64
/// variant, seed 0) of its 16 bytes, as Cassandra computes it (`Long.MIN_VALUE`, which the ring
/// does not use, becomes `Long.MAX_VALUE`). A uuid is exactly one 16-byte block, so the
/// partitioner's sign quirk in the tail of odd-length keys does not apply.
pub fn token_of(id: Uuid) -> i64 {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let bytes = id.as_bytes();
    let mut k1 = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let mut k2 = u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
    let (mut h1, mut h2) = (0u64, 0u64);

    k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    h1 ^= k1;
    h1 = h1
        .rotate_left(27)
        .wrapping_add(h2)
        .wrapping_mul(5)
        .wrapping_add(0x52dc_e729);
    k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    h2 ^= k2;
    h2 = h2
        .rotate_left(31)
        .wrapping_add(h1)
        .wrapping_mul(5)
        .wrapping_add(0x3849_5ab5);

    h1 ^= 16;
    h2 ^= 16;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = mix(h1);
    h2 = mix(h2);
    let token = h1.wrapping_add(h2) as i64;
    if token == i64::MIN { i64::MAX } else { token }
}

/// Murmur3's finalisation of one half.
fn mix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// One of `count` equal parts of the token ring, in ring order: the tokens from `first` to
/// `last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenRange {
    /// Its place among the parts, from 0.
    pub index: u32,
    /// How many parts the ring is split into.
    pub count: u32,
    /// Its first token.
    pub first: i64,
    /// Its last token.
    pub last: i64,
}

impl TokenRange {
    /// The whole ring, as one range.
    pub const WHOLE: TokenRange = TokenRange {
        index: 0,
        count: 1,
        first: i64::MIN,
        last: i64::MAX,
    };

    /// Part `index` of `count` (`index < count`, `count >= 1`).
    pub fn part(index: u32, count: u32) -> Self {
        let count = count.max(1);
        let index = index.min(count - 1);
        let width = (1i128 << 64) / i128::from(count);
        let first = i128::from(i64::MIN) + width * i128::from(index);
        let last = if index + 1 == count {
            i128::from(i64::MAX)
        } else {
            first + width - 1
        };
        Self {
            index,
            count,
            first: first as i64,
            last: last as i64,
        }
    }

    /// Every part of a ring split into `count`.
    pub fn parts(count: u32) -> impl Iterator<Item = TokenRange> {
        (0..count.max(1)).map(move |index| Self::part(index, count))
    }

    /// Whether `token` is in the range.
    pub fn holds(&self, token: i64) -> bool {
        (self.first..=self.last).contains(&token)
    }

    /// Whether `id`'s token is in the range.
    pub fn holds_id(&self, id: Uuid) -> bool {
        self.count == 1 || self.holds(token_of(id))
    }

    /// Whether this is the whole ring.
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }
}

impl std::fmt::Display for TokenRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "range {} of {}", self.index + 1, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_cover_the_ring_without_overlap() {
        for count in [1, 2, 3, 7, 16, 256] {
            let parts: Vec<_> = TokenRange::parts(count).collect();
            assert_eq!(parts.len(), count as usize);
            assert_eq!(parts[0].first, i64::MIN);
            assert_eq!(parts.last().unwrap().last, i64::MAX);
            for pair in parts.windows(2) {
                assert_eq!(pair[0].last.checked_add(1), Some(pair[1].first));
            }
        }
        assert_eq!(TokenRange::part(0, 1), TokenRange::WHOLE);
    }

    #[test]
    fn every_id_is_in_exactly_one_part() {
        for _ in 0..1000 {
            let id = Uuid::new_v4();
            let owners = TokenRange::parts(5).filter(|r| r.holds_id(id)).count();
            assert_eq!(owners, 1);
        }
    }
}
