//! Memory: the page size, backing pages ahead of use, peak resident memory,
//! and the CPU's prefetch hint.

use std::sync::OnceLock;

/// The memory page size, asked once.
pub fn page_size() -> usize {
    static PAGE_SIZE: OnceLock<usize> = OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        // SAFETY: sysconf reads a system constant; it touches no memory of
        // ours.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|s| s.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// Asks the kernel to back the whole pages inside `memory` with writable
/// memory now, in one system call, rather than one page fault per page
/// when each is first written. Only advice: the contents do not change, and
/// when the kernel declines (before Linux 5.14, or short of memory) the
/// pages fault in on first use as before.
pub fn populate_for_writing<T>(memory: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        let page = page_size();
        let start = memory.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(memory);
        // Whole pages inside `memory` only: the pages it shares with its
        // neighbours are someone else's to touch.
        let (first, last) = (start.next_multiple_of(page), end & !(page - 1));
        if first < last {
            // SAFETY: MADV_POPULATE_WRITE faults pages in as a write would,
            // without changing a byte of them, and the range lies within
            // `memory`, which we borrow mutably: nothing is read or written
            // through the call, and nothing else can be using the range.
            let _declined = unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_POPULATE_WRITE,
                )
            };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = memory;
}

/// Asks the CPU to bring the cache line at `ptr` closer; a hint, nothing more.
#[inline(always)]
pub fn prefetch<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 never faults, whatever the address, and reads
    // nothing into the program: no pointer is dereferenced. `unsafe` only
    // because the intrinsic carries a target feature (SSE, always there on
    // x86_64).
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(ptr.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// The process's peak resident set size (`VmHWM`), where /proc tells it.
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Pages of `memory` that are resident, by `mincore`.
    fn resident_pages<T>(memory: &[T]) -> Vec<bool> {
        let page = page_size();
        let start = memory.as_ptr() as usize;
        assert_eq!(start % page, 0, "test memory starts on a page");
        let pages = std::mem::size_of_val(memory).div_ceil(page);
        let mut status = vec![0u8; pages];
        // SAFETY: mincore writes one byte per page of the range into
        // `status`, which has that many; the range is our own allocation.
        let result = unsafe {
            libc::mincore(
                start as *mut libc::c_void,
                pages * page,
                status.as_mut_ptr().cast(),
            )
        };
        assert_eq!(result, 0, "{}", std::io::Error::last_os_error());
        status.iter().map(|s| s & 1 == 1).collect()
    }

    #[test]
    fn populating_backs_exactly_the_whole_pages_inside() {
        // 64 MiB, allocated with mmap by the allocator: no page is resident
        // until touched (and a page-aligned start, as mmap gives).
        let mut memory: Vec<std::mem::MaybeUninit<u64>> = Vec::with_capacity(8 << 20);
        let page = page_size();
        let spare = memory.spare_capacity_mut();
        if !(spare.as_ptr() as usize).is_multiple_of(page) {
            return; // an allocator that does not use mmap for this size
        }
        let per_page = page / 8;
        assert!(resident_pages(spare).iter().all(|&r| !r));
        // From half-way into page 1 to half-way into page 5: pages 2-4.
        populate_for_writing(&mut spare[per_page + per_page / 2..5 * per_page + per_page / 2]);
        let resident = resident_pages(spare);
        assert_eq!(
            &resident[..7],
            &[false, false, true, true, true, false, false]
        );
        assert_eq!(resident.iter().filter(|&&r| r).count(), 3);
    }
}

/// Maps the whole of `file` read-only, its pages read in at once.
///
/// Only for files that are replaced by rename, never changed in place (the
/// compiled-policy cache's entries): the slice is immutable as long as nobody
/// changes the file, and a rename leaves the mapping on the old file.
/// Another program truncating such a file while it is mapped would end the
/// process with SIGBUS on the next read past the new end, as with any
/// mapped file; captures, which may shrink under a replay, are mapped by
/// `capture::file` behind its own guard instead.
pub fn map_replaced_only_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: see above; the caller's files are written under fresh names and
    // renamed into place, so the mapped file's contents never change.
    unsafe { memmap2::MmapOptions::new().populate().map(file) }
}
