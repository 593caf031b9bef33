//! Storage with generational keys: a key names one stream (or channel) for
//! its whole life and never a later one that reuses its slot.
//!
//! A key travels to JavaScript as one number (`slot + gen * 2^24`, below
//! 2^53 so a double holds it exactly). A stale key (the entry was removed)
//! finds nothing instead of someone else's entry.

/// Slots a slab can hold: 2^24 (16 777 216) entries at once.
pub const MAX_SLOTS: u32 = 1 << 24;
/// A slot is retired (never reused) once its generation reaches this, so
/// that a key stays below 2^53.
const MAX_GENERATION: u32 = 1 << 29;

/// A generational key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
  pub slot: u32,
  pub generation: u32,
}

impl Key {
  /// The key as one integer, exact in a JavaScript number.
  pub fn to_bits(self) -> u64 {
    (self.generation as u64) << 24 | self.slot as u64
  }

  /// The key of [`Key::to_bits`]; `None` for numbers no key gives.
  pub fn from_bits(bits: u64) -> Option<Key> {
    let generation = bits >> 24;
    if generation == 0 || generation >= MAX_GENERATION as u64 {
      return None;
    }
    Some(Key {
      slot: (bits & (MAX_SLOTS as u64 - 1)) as u32,
      generation: generation as u32,
    })
  }
}

struct Entry<T> {
  generation: u32,
  value: Option<T>,
}

/// Entries addressed by generational keys.
pub struct Slab<T> {
  entries: Vec<Entry<T>>,
  free: Vec<u32>,
  len: usize,
}

impl<T> Default for Slab<T> {
  fn default() -> Self {
    Slab {
      entries: Vec::new(),
      free: Vec::new(),
      len: 0,
    }
  }
}

impl<T> Slab<T> {
  /// Stores `value`; `None` when every slot is taken.
  pub fn insert(&mut self, value: T) -> Option<Key> {
    let slot = match self.free.pop() {
      Some(slot) => slot,
      None => {
        let slot = u32::try_from(self.entries.len()).ok()?;
        if slot >= MAX_SLOTS {
          return None;
        }
        self.entries.push(Entry {
          generation: 0,
          value: None,
        });
        slot
      }
    };
    let entry = &mut self.entries[slot as usize];
    entry.generation += 1;
    entry.value = Some(value);
    self.len += 1;
    Some(Key {
      slot,
      generation: entry.generation,
    })
  }

  pub fn get(&self, key: Key) -> Option<&T> {
    let entry = self.entries.get(key.slot as usize)?;
    if entry.generation != key.generation {
      return None;
    }
    entry.value.as_ref()
  }

  pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
    let entry = self.entries.get_mut(key.slot as usize)?;
    if entry.generation != key.generation {
      return None;
    }
    entry.value.as_mut()
  }

  pub fn contains(&self, key: Key) -> bool {
    self.get(key).is_some()
  }

  /// Takes the entry out; its key finds nothing from then on.
  pub fn remove(&mut self, key: Key) -> Option<T> {
    let entry = self.entries.get_mut(key.slot as usize)?;
    if entry.generation != key.generation {
      return None;
    }
    let value = entry.value.take()?;
    self.len -= 1;
    if entry.generation < MAX_GENERATION - 1 {
      self.free.push(key.slot);
    }
    Some(value)
  }

  pub fn len(&self) -> usize {
    self.len
  }

  pub fn is_empty(&self) -> bool {
    self.len == 0
  }

  /// The keys of the entries, in slot order.
  pub fn keys(&self) -> impl Iterator<Item = Key> + '_ {
    self.entries.iter().enumerate().filter_map(|(slot, entry)| {
      entry.value.as_ref().map(|_| Key {
        slot: slot as u32,
        generation: entry.generation,
      })
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn stale_keys_find_nothing() {
    let mut slab = Slab::default();
    let a = slab.insert("a").unwrap();
    assert_eq!(slab.remove(a), Some("a"));
    let b = slab.insert("b").unwrap();
    assert_eq!(a.slot, b.slot);
    assert_ne!(a, b);
    assert_eq!(slab.get(a), None);
    assert_eq!(slab.get(b), Some(&"b"));
    assert_eq!(slab.remove(a), None);
    assert_eq!(slab.len(), 1);
  }

  #[test]
  fn bits_round_trip_and_stay_exact_in_a_double() {
    let key = Key {
      slot: MAX_SLOTS - 1,
      generation: MAX_GENERATION - 1,
    };
    let bits = key.to_bits();
    assert!(bits < 1 << 53);
    assert_eq!(Key::from_bits(bits), Some(key));
    assert_eq!(Key::from_bits(0), None);
    assert_eq!(Key::from_bits(u64::MAX), None);
  }
}
