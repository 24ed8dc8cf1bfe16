//! Memory the engine sends from without a caller's keep-alive handle: page-aligned regions
//! (file staging slots, `BufferPool` buffers), optionally registered with the ring as fixed
//! buffers so zero-copy sends skip per-send page pinning (`IORING_RECVSEND_FIXED_BUF`).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

/// Page size assumed for alignment (the kernel pins whole pages either way).
const PAGE: usize = 4096;

/// A heap region with a stable address, freed on drop.
///
/// Whoever hands its memory to the kernel must keep the `Region` alive until the kernel has
/// released that memory (the engine keeps `Arc<Region>`s in its requests' records).
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Region is plain owned memory; sharing it between threads is sound as long as
// writers and the kernel do not race, which the owners (pool slots, file slots) arrange.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` only exposes the address and length.
unsafe impl Sync for Region {}

impl Region {
    /// Allocates `len` zeroed bytes (at least one page), page-aligned.
    pub fn new(len: usize) -> Option<Self> {
        let layout = Layout::from_size_align(len.max(PAGE).next_multiple_of(PAGE), PAGE).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(Region {
            ptr,
            len: layout.size(),
        })
    }

    /// Start address.
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Start pointer.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes (a whole number of pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never empty: a region is at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `[addr, addr + len)` lies inside this region.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.addr() && addr.saturating_add(len) <= self.addr() + self.len
    }

    /// The region as an iovec, for buffer registration.
    pub fn iovec(&self) -> libc::iovec {
        libc::iovec {
            iov_base: self.as_ptr().cast(),
            iov_len: self.len,
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let layout =
            Layout::from_size_align(self.len, PAGE).expect("layout was valid at allocation");
        // SAFETY: `ptr` came from `alloc_zeroed` with this same layout and is freed once.
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}

/// The soft `RLIMIT_MEMLOCK` of this process in bytes (`None` when unlimited or unknown):
/// registered buffers, and unregistered zero-copy sends in flight, are charged against it.
pub fn memlock_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0
            || r.rlim_cur == libc::RLIM_INFINITY
        {
            return None;
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
        Some(r.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Which slots of the ring's sparse fixed-buffer table are free.
#[derive(Debug)]
pub struct BufTable {
    free: Vec<u16>,
}

impl BufTable {
    /// A table of `size` slots, all free.
    pub fn new(size: u16) -> Self {
        BufTable {
            free: (0..size).rev().collect(),
        }
    }

    /// A table with no slots (registration unavailable).
    pub fn empty() -> Self {
        BufTable { free: Vec::new() }
    }

    /// Takes a free slot index.
    pub fn take(&mut self) -> Option<u16> {
        self.free.pop()
    }

    /// Returns a slot index.
    pub fn give(&mut self, index: u16) {
        self.free.push(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_page_aligned_and_zeroed() {
        let r = Region::new(10_000).unwrap();
        assert_eq!(r.addr() % PAGE, 0);
        assert_eq!(r.len(), 12_288);
        // SAFETY: reading our own freshly allocated region.
        let bytes = unsafe { std::slice::from_raw_parts(r.as_ptr(), r.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
        assert!(r.contains(r.addr() + 100, 12_188));
        assert!(!r.contains(r.addr() + 100, 12_189));
        assert!(!r.contains(r.addr() - 1, 1));
    }

    #[test]
    fn table_hands_out_each_slot_once() {
        let mut t = BufTable::new(3);
        let got: Vec<_> = std::iter::from_fn(|| t.take()).collect();
        assert_eq!(got, vec![0, 1, 2]);
        t.give(1);
        assert_eq!(t.take(), Some(1));
        assert_eq!(BufTable::empty().take(), None);
    }
}
