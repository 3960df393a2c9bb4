//! The global allocator: mimalloc, asked for plain blocks whenever their alignment is enough.
//!
//! `mimalloc::MiMalloc` hands every allocation to `mi_malloc_aligned`, whatever its alignment.
//! In mimalloc v3 that call has a fast path only for a small block that happens to be free on
//! the right page. When that misses (the page's free list ran out, or the block is over 1 KiB)
//! and the size is not a power of two, it goes through two out-of-line fallbacks and
//! over-allocates (`size + align - 1` bytes, marking the page as holding interior pointers when
//! the address had to be moved). mimalloc v2 took a plain block for any alignment up to 16;
//! v3 lost that check. On the request path, 6–7 of the 16 allocations per request took that
//! path (measured with callgrind, bench/RESULTS.md).
//!
//! Every block of `mi_malloc` is aligned to 16 bytes (`MI_MAX_ALIGN_SIZE`: small sizes are
//! rounded up to double words, and pages start 16-aligned), except 8-byte blocks, which are
//! 8-aligned. So, as std's `System` allocator does with `malloc`, this allocator calls the
//! plain functions when `align <= 16 && align <= size`, and the aligned ones otherwise.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The largest alignment every `mi_malloc` block of at least that size has.
const PLAIN_ALIGN: usize = 16;

/// mimalloc as the global allocator (see the module documentation).
pub struct MiMalloc;

/// Whether a plain mimalloc block of `size` bytes is aligned enough for `align`.
#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

/// A block for `layout` from `plain_fn` (`mi_malloc` or `mi_zalloc`) when a plain block is
/// aligned enough, else from `aligned_fn` (their `_aligned` forms).
///
/// # Safety
/// `layout` has a non-zero size, as `GlobalAlloc::alloc` requires.
#[inline]
unsafe fn allocate(
    layout: Layout,
    plain_fn: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned_fn: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: mimalloc's allocation functions take any size and power-of-two alignment, which
    // `Layout` guarantees.
    unsafe {
        if plain(layout.align(), layout.size()) {
            plain_fn(layout.size()) as *mut u8
        } else {
            aligned_fn(layout.size(), layout.align()) as *mut u8
        }
    }
}

// SAFETY: every pointer comes from mimalloc with at least the layout's alignment (plain blocks
// only when `plain` holds, see above), and every pointer given back to mimalloc came from it.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller passes a non-zero size.
        unsafe { allocate(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { allocate(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, so by mimalloc; `mi_free` takes
        // plain and aligned blocks alike.
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by this allocator with `layout`; the new block keeps the
        // alignment (plain blocks only when they have it at the new size).
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (size, alignment) pairs across both paths: below, at and above 16, small and large
    /// blocks, sizes that are not powers of two, and alignments larger than the size.
    const LAYOUTS: &[(usize, usize)] = &[
        (1, 1),
        (3, 2),
        (8, 8),
        (12, 4),
        (24, 8),
        (40, 8),
        (40, 16),
        (8, 16),
        (72, 8),
        (100, 32),
        (200, 64),
        (1000, 8),
        (1500, 16),
        (4000, 128),
        (8192, 8),
        (70_000, 16),
        (70_000, 4096),
    ];

    fn layouts() -> impl Iterator<Item = Layout> {
        LAYOUTS
            .iter()
            .map(|&(size, align)| Layout::from_size_align(size, align).expect("valid layout"))
    }

    #[test]
    fn blocks_have_the_alignment_asked_for_and_hold_their_bytes() {
        for layout in layouts() {
            // Many at once, so some come from fresh pages and some from reused blocks.
            let blocks: Vec<*mut u8> = (0..64)
                .map(|i| {
                    // SAFETY: non-zero size; the block is written within its size and freed below.
                    unsafe {
                        let p = MiMalloc.alloc(layout);
                        assert!(!p.is_null(), "{layout:?}");
                        assert_eq!(p as usize % layout.align(), 0, "{layout:?}");
                        std::ptr::write_bytes(p, i as u8, layout.size());
                        p
                    }
                })
                .collect();
            for (i, p) in blocks.into_iter().enumerate() {
                // SAFETY: `p` holds `layout.size()` bytes written above, and was allocated with `layout`.
                unsafe {
                    let bytes = std::slice::from_raw_parts(p, layout.size());
                    assert!(bytes.iter().all(|&b| b == i as u8), "{layout:?}");
                    MiMalloc.dealloc(p, layout);
                }
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_even_where_freed_blocks_were_written() {
        for layout in layouts() {
            // SAFETY: the blocks are written within their size, read, and freed.
            unsafe {
                let dirty = MiMalloc.alloc(layout);
                std::ptr::write_bytes(dirty, 0xAB, layout.size());
                MiMalloc.dealloc(dirty, layout);
                let p = MiMalloc.alloc_zeroed(layout);
                assert_eq!(p as usize % layout.align(), 0, "{layout:?}");
                let bytes = std::slice::from_raw_parts(p, layout.size());
                assert!(bytes.iter().all(|&b| b == 0), "{layout:?}");
                MiMalloc.dealloc(p, layout);
            }
        }
    }

    #[test]
    fn realloc_keeps_the_contents_and_the_alignment() {
        for layout in layouts() {
            for new_size in [layout.size() / 2 + 1, layout.size() * 3 + 5] {
                // SAFETY: the block is written within its old size, reallocated with the layout
                // it was allocated with, read within the smaller of the sizes, and freed with the
                // layout of its new size.
                unsafe {
                    let p = MiMalloc.alloc(layout);
                    for i in 0..layout.size() {
                        *p.add(i) = (i % 251) as u8;
                    }
                    let q = MiMalloc.realloc(p, layout, new_size);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % layout.align(), 0, "{layout:?} -> {new_size}");
                    for i in 0..layout.size().min(new_size) {
                        assert_eq!(*q.add(i), (i % 251) as u8, "{layout:?} -> {new_size}");
                    }
                    let new_layout = Layout::from_size_align(new_size, layout.align()).unwrap();
                    MiMalloc.dealloc(q, new_layout);
                }
            }
        }
    }
}
