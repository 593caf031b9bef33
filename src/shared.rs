//! Bytes framed once and written to many connections: the events a channel
//! broadcasts in one tick (or one flush window).
//!
//! Each member's connection holds a range of these bytes instead of a copy.
//! When a member's pending bytes for the tick are exactly the whole batch
//! (the usual case: it was a member all tick and every event was for
//! everyone), the end-of-tick flush writes one `Buffer`, made once per flush
//! and shared by every such member, so a broadcast to N clients costs one
//! copy out of Rust instead of N.

use std::cell::{Cell, Ref, RefCell};

use napi::{sys, Result};

use crate::js;

#[derive(Default)]
pub struct SharedBytes {
  bytes: RefCell<Vec<u8>>,
  /// The `Buffer` made from all the bytes during one end-of-tick flush: the
  /// flush's generation and the value, valid in that flush's handle scope.
  buffer: Cell<Option<(u64, js::Value)>>,
}

impl SharedBytes {
  pub fn len(&self) -> usize {
    self.bytes.borrow().len()
  }

  /// Appends with `fill` (which leaves the bytes as they were when it
  /// fails) and returns the range of what it wrote.
  pub fn append<E>(
    &self,
    fill: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), E>,
  ) -> std::result::Result<(usize, usize), E> {
    let mut bytes = self.bytes.borrow_mut();
    let start = bytes.len();
    fill(&mut bytes)?;
    Ok((start, bytes.len()))
  }

  /// Forgets the bytes, keeping the allocation; only when no connection
  /// holds a range of them.
  pub fn clear(&self) {
    self.bytes.borrow_mut().clear();
    self.buffer.set(None);
  }

  pub fn bytes(&self) -> Ref<'_, Vec<u8>> {
    self.bytes.borrow()
  }

  /// One `Buffer` with all the bytes. Inside an end-of-tick flush
  /// (`generation` is `Some`), made once and reused for every connection of
  /// that flush; otherwise made anew.
  pub fn buffer(&self, env: sys::napi_env, generation: Option<u64>) -> Result<js::Value> {
    if let (Some(generation), Some((made_in, value))) = (generation, self.buffer.get()) {
      if made_in == generation {
        return Ok(value);
      }
    }
    let value = js::buffer_copy(env, &self.bytes.borrow())?;
    if let Some(generation) = generation {
      self.buffer.set(Some((generation, value)));
    }
    Ok(value)
  }
}
