//! `BindingPool`: a block of memory registered with this thread's ring, handed to JS as
//! Buffers, so zero-copy sends from it use fixed buffers (`IORING_RECVSEND_FIXED_BUF`).

use std::sync::Arc;

use napi::bindgen_prelude::BufferSlice;
use napi::Env;
use napi_derive::napi;
use zerocopy_core::buf::{memlock_limit, Region};

use crate::engine::engine;
use crate::error;

/// `count` buffers of `size` bytes in one region, registered with the ring when possible.
#[napi]
pub struct BindingPool {
    region: Arc<Region>,
    size: u32,
    count: u32,
    reason: Option<String>,
    registered: bool,
}

#[napi]
impl BindingPool {
    /// Allocates the region and tries to register it (the engine must be started for that).
    #[napi(constructor)]
    pub fn new(env: Env, size: u32, count: u32) -> napi::Result<Self> {
        let bytes = size as usize * count as usize;
        let Some(region) = Region::new(bytes).map(Arc::new) else {
            return error::throw(
                &env,
                error::coded("ENOMEM", format!("cannot allocate {bytes} bytes")),
            );
        };
        let (registered, reason) = match engine() {
            None => (
                false,
                Some(zerocopy_core::probe().reason.as_ref().map_or_else(
                    || "the send engine is not running".to_string(),
                    |r| r.message.clone(),
                )),
            ),
            Some(e) => match e.register(region.clone()) {
                Ok(()) => (true, None),
                Err(errno) => {
                    let limit =
                        memlock_limit().map_or("unlimited".to_string(), |l| format!("{l} bytes"));
                    (
                        false,
                        Some(format!(
                            "registering {} bytes failed with {} (RLIMIT_MEMLOCK: {limit}); using ordinary memory",
                            region.len(),
                            errno.code()
                        )),
                    )
                }
            },
        };
        Ok(BindingPool {
            region,
            size,
            count,
            reason,
            registered,
        })
    }

    /// Whether the memory is registered with the ring (fixed buffers).
    #[napi(getter)]
    pub fn registered(&self) -> bool {
        self.registered
    }

    /// Why the memory is not registered; `null` when it is.
    #[napi(getter)]
    pub fn reason(&self) -> Option<String> {
        self.reason.clone()
    }

    /// Buffer number `index` (call once per index: V8 allows one Buffer per memory block).
    /// It keeps the pool's memory alive for as long as it lives.
    #[napi]
    pub fn buffer<'env>(&self, env: &'env Env, index: u32) -> napi::Result<BufferSlice<'env>> {
        if index >= self.count {
            return Err(napi::Error::new(
                napi::Status::InvalidArg,
                "index out of range",
            ));
        }
        let offset = index as usize * self.size as usize;
        // SAFETY: [offset, offset + size) lies inside the region (index < count), and the
        // region stays allocated until the finalizer drops the Arc this Buffer holds.
        unsafe {
            BufferSlice::from_external(
                env,
                self.region.as_ptr().add(offset),
                self.size as usize,
                self.region.clone(),
                |_env, region| drop(region),
            )
        }
    }
}

impl Drop for BindingPool {
    fn drop(&mut self) {
        if self.registered {
            if let Some(e) = engine() {
                // In-flight sends keep their own references to the memory (their Buffers).
                e.unregister(self.region.addr());
            }
        }
    }
}
