//! A set of link indices (which links ran, which are excluded for this request). Chains of up
//! to 64 links fit inline; longer ones spill into a vector.

/// A bit set of link positions.
#[derive(Debug, Clone, Default)]
pub struct LinkSet {
    low: u64,
    high: Vec<u64>,
}

impl LinkSet {
    /// Adds link `i`.
    #[inline]
    pub fn insert(&mut self, i: usize) {
        if i < 64 {
            self.low |= 1 << i;
        } else {
            let word = i / 64 - 1;
            if self.high.len() <= word {
                self.high.resize(word + 1, 0);
            }
            self.high[word] |= 1 << (i % 64);
        }
    }

    /// Whether link `i` is in the set.
    #[inline]
    pub fn contains(&self, i: usize) -> bool {
        if i < 64 {
            self.low & (1 << i) != 0
        } else {
            self.high
                .get(i / 64 - 1)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_small_and_large_indices() {
        let mut set = LinkSet::default();
        for i in [0, 5, 63, 64, 130] {
            set.insert(i);
        }
        for i in 0..200 {
            assert_eq!(set.contains(i), [0, 5, 63, 64, 130].contains(&i), "{i}");
        }
    }
}
