//! Storage for packed weights on 2 MB pages where Linux gives them ([`Pages`]).
//!
//! A matrix-vector product reads every weight once per token. On 4 KB pages a 1B model's
//! 650 MB are 166,000 pages a token, each a TLB miss, and the hardware prefetcher stops at each
//! page's end; on 2 MB pages they are 325. Transparent huge pages are commonly enabled for
//! memory that asks (`madvise`), and only memory not yet touched gets them, so large buffers
//! are mapped fresh, asked for, then filled.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// Bytes of a huge page.
#[cfg(target_os = "linux")]
const HUGE: usize = 2 << 20;

/// A fixed-length buffer of `T`: its own 2 MB-aligned mapping, asked to be backed by huge pages
/// (Linux, buffers of a huge page or more), or an ordinary `Vec` elsewhere.
pub struct Pages<T: Copy> {
    inner: Inner<T>,
}

enum Inner<T> {
    Heap(Vec<T>),
    #[cfg(target_os = "linux")]
    Mapped {
        ptr: std::ptr::NonNull<T>,
        len: usize,
        /// Bytes mapped (whole 4 KB pages).
        bytes: usize,
    },
}

// SAFETY: `Pages` owns its elements as a `Vec` does; the mapping is not shared.
unsafe impl<T: Copy + Send> Send for Pages<T> {}
// SAFETY: as above; `&Pages` gives only `&[T]`.
unsafe impl<T: Copy + Sync> Sync for Pages<T> {}

impl<T: Copy> Pages<T> {
    /// `v` as it is (small buffers, and where huge pages are not asked for).
    pub fn from_vec(v: Vec<T>) -> Self {
        Self {
            inner: Inner::Heap(v),
        }
    }

    /// The elements of `parts` one after the other, in a buffer of their own.
    pub fn concat<'a>(parts: impl Iterator<Item = &'a [T]> + Clone) -> Self
    where
        T: 'a,
    {
        let len: usize = parts.clone().map(<[T]>::len).sum();
        #[cfg(target_os = "linux")]
        if let Some(mut pages) = Self::mapped(len) {
            let mut at = 0;
            for p in parts {
                pages[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
            return pages;
        }
        let mut v = Vec::with_capacity(len);
        for p in parts {
            v.extend_from_slice(p);
        }
        Self::from_vec(v)
    }

    /// `len` zeroed elements on a fresh mapping asked to use huge pages, or `None` (smaller
    /// than a huge page, or the mapping refused).
    #[cfg(target_os = "linux")]
    fn mapped(len: usize) -> Option<Self> {
        let size = len.checked_mul(std::mem::size_of::<T>())?;
        if size < HUGE || std::mem::align_of::<T>() > 4096 {
            return None;
        }
        let bytes = size.next_multiple_of(4096);
        // Map a huge page more than needed, then unmap the ends so that the buffer starts on
        // a 2 MB boundary: all its whole huge pages can then be huge.
        // SAFETY: an anonymous private mapping; the pointers below stay inside it.
        unsafe {
            let raw = libc::mmap(
                std::ptr::null_mut(),
                bytes + HUGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if raw == libc::MAP_FAILED {
                return None;
            }
            let raw = raw as usize;
            let start = raw.next_multiple_of(HUGE);
            if start > raw {
                libc::munmap(raw as *mut libc::c_void, start - raw);
            }
            let tail = raw + bytes + HUGE - (start + bytes);
            if tail > 0 {
                libc::munmap((start + bytes) as *mut libc::c_void, tail);
            }
            // Advice only: where it is refused the buffer works on small pages.
            libc::madvise(
                start as *mut libc::c_void,
                bytes / HUGE * HUGE,
                libc::MADV_HUGEPAGE,
            );
            Some(Self {
                inner: Inner::Mapped {
                    ptr: std::ptr::NonNull::new(start as *mut T)?,
                    len,
                    bytes,
                },
            })
        }
    }
}

impl<T: Copy> Deref for Pages<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.inner {
            Inner::Heap(v) => v,
            // SAFETY: the mapping holds `len` initialized (zeroed, then written) elements.
            #[cfg(target_os = "linux")]
            Inner::Mapped { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
        }
    }
}

impl<T: Copy> DerefMut for Pages<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.inner {
            Inner::Heap(v) => v,
            // SAFETY: as in `deref`, and `&mut self` is the only access.
            #[cfg(target_os = "linux")]
            Inner::Mapped { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
        }
    }
}

impl<T: Copy> Drop for Pages<T> {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Inner::Mapped { ptr, bytes, .. } = self.inner {
            // SAFETY: the mapping made in `mapped`, unmapped once.
            unsafe { libc::munmap(ptr.as_ptr() as *mut libc::c_void, bytes) };
        }
    }
}

impl<T: Copy> Clone for Pages<T> {
    fn clone(&self) -> Self {
        Self::concat(std::iter::once(&self[..]))
    }
}

impl<T: Copy> fmt::Debug for Pages<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let huge = !matches!(self.inner, Inner::Heap(_));
        write!(f, "Pages({} elements, huge: {huge})", self.len())
    }
}

impl<T: Copy> From<Vec<T>> for Pages<T> {
    fn from(v: Vec<T>) -> Self {
        Self::from_vec(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_buffers_hold_their_parts_in_order_small_or_mapped() {
        for len in [3usize, 5 << 20] {
            let a: Vec<u16> = (0..len).map(|i| i as u16).collect();
            let b = vec![7u16; 1000];
            let mut p = Pages::concat([&a[..], &b[..]].into_iter());
            assert_eq!(p.len(), len + 1000);
            assert_eq!(&p[..len], &a[..]);
            assert!(p[len..].iter().all(|&v| v == 7));
            p[0] = 9;
            let q = p.clone();
            assert_eq!((q[0], q.len(), &q[1..len]), (9, len + 1000, &a[1..]));
            #[cfg(target_os = "linux")]
            assert_eq!(
                format!("{q:?}").contains("huge: true"),
                len * 2 >= HUGE,
                "{q:?}"
            );
        }
    }
}
