//! A counting global allocator, so the kit can see what a decode call allocates.
//!
//! Install it in a codec's conformance test binary:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: meta_protocol_core::testkit::CountingAllocator =
//!     meta_protocol_core::testkit::CountingAllocator;
//! # fn main() {
//! let (v, stats) = meta_protocol_core::testkit::track_allocations(|| vec![0u8; 1000]);
//! assert_eq!(v.len(), 1000);
//! let stats = stats.expect("installed above");
//! assert_eq!(stats.count, 1);
//! assert!(stats.largest >= 1000);
//! # }
//! ```
//!
//! Counting is per thread, so tests running in parallel do not disturb each other.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The system allocator, counting the allocations of threads that are being tracked.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAllocator;

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    INSTALLED.store(true, Ordering::Relaxed);
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
            let _ = TOTAL.try_with(|l| l.set(l.get().saturating_add(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping only touches
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What [`track_allocations`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllocStats {
    /// Number of allocations and reallocations.
    pub count: usize,
    /// The largest single allocation, in bytes.
    pub largest: usize,
    /// Bytes requested in all.
    pub total: usize,
}

/// Runs `f` and reports what it allocated on this thread; `None` for the stats when
/// [`CountingAllocator`] is not the global allocator.
pub fn track_allocations<R>(f: impl FnOnce() -> R) -> (R, Option<AllocStats>) {
    // A first allocation tells whether the counting allocator is installed.
    drop(std::hint::black_box(Box::new(0u8)));
    let was = TRACKING.with(|t| t.replace(true));
    COUNT.with(|c| c.set(0));
    LARGEST.with(|l| l.set(0));
    TOTAL.with(|l| l.set(0));
    let r = f();
    TRACKING.with(|t| t.set(was));
    let stats = AllocStats {
        count: COUNT.with(Cell::get),
        largest: LARGEST.with(Cell::get),
        total: TOTAL.with(Cell::get),
    };
    (r, INSTALLED.load(Ordering::Relaxed).then_some(stats))
}
