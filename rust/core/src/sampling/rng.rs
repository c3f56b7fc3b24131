//! A small, fast, seedable PRNG (xoshiro256++ seeded through SplitMix64) and the two
//! primitives the samplers need: an unbiased integer in `[0, m)` and "k of n without
//! replacement" as a sorted list of distinct ordinals.
//!
//! No external RNG crate: the workspace has none, and the samplers only need these few lines.

/// SplitMix64 step: used to expand one 64-bit seed into independent stream states.
#[inline]
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ (Blackman & Vigna): 256-bit state, period 2^256 − 1, passes BigCrush.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Stream `stream` of seed `seed`: distinct (seed, stream) pairs give unrelated sequences.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut sm = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        // Mix the stream in a second time so that (seed, stream) and (seed', stream') that
        // collide in the XOR above still diverge.
        let _ = splitmix64(&mut sm);
        sm = sm.wrapping_add(stream.rotate_left(17));
        let mut s = [0u64; 4];
        for w in s.iter_mut() {
            *w = splitmix64(&mut sm);
        }
        if s == [0; 4] {
            s[0] = 1; // the all-zero state is the one fixed point
        }
        Rng { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform integer in `[0, m)`, unbiased (Lemire's multiply-and-reject). `m` must be > 0.
    #[inline]
    pub fn below(&mut self, m: u64) -> u64 {
        debug_assert!(m > 0);
        let mut x = self.next_u64();
        let mut prod = (x as u128) * (m as u128);
        let mut low = prod as u64;
        if low < m {
            let threshold = m.wrapping_neg() % m;
            while low < threshold {
                x = self.next_u64();
                prod = (x as u128) * (m as u128);
                low = prod as u64;
            }
        }
        (prod >> 64) as u64
    }
}

/// `k` distinct ordinals drawn uniformly from `[0, n)` without replacement, sorted ascending.
///
/// Floyd's algorithm (every k-subset equally likely, exactly k draws). The "already taken"
/// set is a bitset over `[0, n)` when that is small relative to `k` (always the case for
/// nnU-Net's rule, where k ≥ 1 % of n once n > 1e6), otherwise an open-addressing hash set,
/// so memory stays O(k) for any n.
pub fn sample_without_replacement(n: u64, k: u64, rng: &mut Rng) -> Vec<u64> {
    assert!(k <= n, "cannot draw {k} of {n} without replacement");
    if k == 0 {
        return Vec::new();
    }
    if k == n {
        return (0..n).collect();
    }
    let words = n.div_ceil(64);
    if words <= (4 * k).max(1 << 16) {
        let mut bits = vec![0u64; words as usize];
        for j in (n - k)..n {
            let t = rng.below(j + 1);
            let (w, b) = ((t >> 6) as usize, t & 63);
            let pick = if bits[w] >> b & 1 == 1 { j } else { t };
            bits[(pick >> 6) as usize] |= 1u64 << (pick & 63);
        }
        let mut out = Vec::with_capacity(k as usize);
        for (w, &word) in bits.iter().enumerate() {
            let mut word = word;
            while word != 0 {
                let b = word.trailing_zeros() as u64;
                out.push(((w as u64) << 6) | b);
                word &= word - 1;
            }
        }
        debug_assert_eq!(out.len() as u64, k);
        out
    } else {
        let mut set = HashSetU64::with_capacity(k as usize);
        for j in (n - k)..n {
            let t = rng.below(j + 1);
            if !set.insert(t) {
                set.insert(j);
            }
        }
        let mut out = set.into_vec();
        out.sort_unstable();
        debug_assert_eq!(out.len() as u64, k);
        out
    }
}

/// Minimal open-addressing set of u64 values (linear probing, u64::MAX = empty slot).
struct HashSetU64 {
    slots: Vec<u64>,
    shift: u32,
    len: usize,
}

impl HashSetU64 {
    fn with_capacity(k: usize) -> Self {
        let cap = (2 * k + 2).next_power_of_two().max(16);
        HashSetU64 {
            slots: vec![u64::MAX; cap],
            shift: 64 - cap.trailing_zeros(),
            len: 0,
        }
    }

    /// Inserts `v`; returns false if it was already present.
    fn insert(&mut self, v: u64) -> bool {
        let mask = self.slots.len() - 1;
        let mut i = (v.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize;
        loop {
            let s = self.slots[i];
            if s == v {
                return false;
            }
            if s == u64::MAX {
                self.slots[i] = v;
                self.len += 1;
                return true;
            }
            i = (i + 1) & mask;
        }
    }

    fn into_vec(self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.len);
        out.extend(self.slots.into_iter().filter(|&s| s != u64::MAX));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_in_range_and_covers() {
        let mut r = Rng::new(1, 0);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let v = r.below(7);
            assert!(v < 7);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
    }

    #[test]
    fn streams_differ() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(1234, 0);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(1234, 1);
                move |_| r.next_u64()
            })
            .collect();
        assert_ne!(a, b);
    }

    fn check(n: u64, k: u64, seed: u64) -> Vec<u64> {
        let mut r = Rng::new(seed, 3);
        let v = sample_without_replacement(n, k, &mut r);
        assert_eq!(v.len() as u64, k);
        assert!(v.windows(2).all(|w| w[0] < w[1]), "not strictly increasing");
        assert!(v.iter().all(|&x| x < n));
        v
    }

    #[test]
    fn without_replacement_bitset_and_hash_paths() {
        check(10, 0, 1);
        check(10, 10, 1);
        check(10, 3, 1);
        check(100_000, 1000, 2); // bitset
        check(1 << 40, 1000, 3); // hash set
        check(u64::MAX, 50, 4); // hash set at the extreme
    }

    #[test]
    fn without_replacement_is_uniform() {
        // Each element of [0, 10) should be chosen with probability 3/10.
        let mut counts = [0u32; 10];
        let mut r = Rng::new(99, 0);
        for _ in 0..20_000 {
            for v in sample_without_replacement(10, 3, &mut r) {
                counts[v as usize] += 1;
            }
        }
        for c in counts {
            assert!((5600..6400).contains(&c), "{counts:?}");
        }
        // Same through the hash path (n large relative to k).
        let mut lo = 0u32;
        let n = 1u64 << 30;
        for _ in 0..2000 {
            lo += sample_without_replacement(n, 10, &mut r)
                .iter()
                .filter(|&&v| v < n / 2)
                .count() as u32;
        }
        assert!((9400..10600).contains(&lo), "{lo}");
    }
}
