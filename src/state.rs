//! What the binding keeps per JavaScript environment: the core's engine,
//! the clock its timers count on, and the JavaScript glue the constructors
//! hand new streams and channels to.
//!
//! The engine is borrowed only for the length of one core call, and no
//! JavaScript runs while it is (the core never calls out; the binding calls
//! JavaScript only before or after). A call that finds it borrowed anyway
//! (a finalizer run by the garbage collector in the middle of one) is
//! refused with an error or deferred, never a panic.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use napi::bindgen_prelude::*;
use napi::Env;
use native_sse_core::{Engine, Key};

pub struct State {
  engine: RefCell<Engine>,
  started: Instant,
  /// The JS front's glue object (`attachStream`, `attachChannel`), given
  /// once by `init()`.
  glue: RefCell<Option<ObjectRef<false>>>,
  /// Channels whose JavaScript object was collected while the engine was
  /// busy: dropped at the next call.
  dropped: RefCell<Vec<Key>>,
}

impl State {
  /// The state of `env`, made on first use.
  pub fn get(env: &Env) -> Result<Rc<State>> {
    if let Some(state) = env.get_instance_data::<Rc<State>>()? {
      return Ok(Rc::clone(state));
    }
    let state = Rc::new(State {
      engine: RefCell::new(Engine::new()),
      started: Instant::now(),
      glue: RefCell::new(None),
      dropped: RefCell::new(Vec::new()),
    });
    env.set_instance_data(Rc::clone(&state), (), |_| {})?;
    Ok(state)
  }

  /// Runs one core call.
  pub fn with<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> Result<R> {
    let Ok(mut engine) = self.engine.try_borrow_mut() else {
      return Err(Error::new(
        Status::GenericFailure,
        "native-sse: the engine is busy (a call from inside a finalizer)",
      ));
    };
    let dropped = std::mem::take(&mut *self.dropped.borrow_mut());
    for channel in dropped {
      engine.drop_channel(channel);
    }
    Ok(f(&mut engine))
  }

  /// A channel's object was collected: dropped now, or at the next call
  /// when the engine is busy.
  pub fn drop_channel(&self, channel: Key) {
    match self.engine.try_borrow_mut() {
      Ok(mut engine) => engine.drop_channel(channel),
      Err(_) => self.dropped.borrow_mut().push(channel),
    }
  }

  /// Milliseconds since the state was made: the clock of the core's timers.
  pub fn now_ms(&self) -> u64 {
    self.started.elapsed().as_millis() as u64
  }

  pub fn set_glue(&self, env: &Env, glue: &Object) -> Result<()> {
    let previous = self.glue.borrow_mut().replace(glue.create_ref()?);
    if let Some(previous) = previous {
      previous.unref(env)?;
    }
    Ok(())
  }

  /// The glue function `name`.
  pub fn glue<'env, Args: JsValuesTupleIntoVec>(
    &self,
    env: &'env Env,
    name: &str,
  ) -> Result<Function<'env, Args, Unknown<'env>>> {
    let glue = self.glue.borrow();
    let Some(glue) = glue.as_ref() else {
      return Err(Error::new(
        Status::GenericFailure,
        "native-sse: load the package through its entry point (the JS front was not initialised)",
      ));
    };
    let object: Object = glue.get_value(env)?;
    object.get_named_property(name)
  }
}

/// Calls a glue function (from [`State::glue`]). An exception it throws (a
/// `TypeError` of the front, or user code's own) stays pending as it is, so
/// it reaches the caller with its type, `code` and identity, and the call
/// answers `Status::PendingException`. napi-rs's `Function::call` takes the
/// exception instead and, on WASI, throws back a plain `Error` made from its
/// message. The caller must not call Node-API again before returning the
/// error (the glue's callers only tidy the engine up, in Rust).
pub fn call_glue<'env, Args: JsValuesTupleIntoVec>(
  env: &'env Env,
  function: &Function<'env, Args, Unknown<'env>>,
  args: Args,
) -> Result<Unknown<'env>> {
  let raw = env.raw();
  let mut this = std::ptr::null_mut();
  // SAFETY: makes `undefined` in the current handle scope, into a local.
  check_status!(unsafe { napi::sys::napi_get_undefined(raw, &mut this) })?;
  let argv = args.into_vec(raw)?;
  let mut result = std::ptr::null_mut();
  // SAFETY: `function` and every value of `argv` belong to this call's
  // handle scope; `argv` holds `argv.len()` values; `result` is a local.
  let status = unsafe {
    napi::sys::napi_call_function(
      raw,
      this,
      function.value().value,
      argv.len(),
      argv.as_ptr(),
      &mut result,
    )
  };
  match status {
    // SAFETY: a value the call just returned, in the current scope.
    napi::sys::Status::napi_ok => Ok(unsafe { Unknown::from_raw_unchecked(raw, result) }),
    napi::sys::Status::napi_pending_exception => Err(Error::new(
      Status::PendingException,
      "native-sse: the front threw",
    )),
    other => Err(Error::new(
      Status::from(other),
      "native-sse: calling the front failed",
    )),
  }
}

/// `bits` as a key; a number no key gives finds nothing.
pub fn key(bits: f64) -> Key {
  Key::from_bits(if bits >= 0.0 && bits.fract() == 0.0 {
    bits as u64
  } else {
    0
  })
  .unwrap_or(Key {
    slot: u32::MAX,
    generation: u32::MAX,
  })
}
