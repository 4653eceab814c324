//! Memory-mapped captures that survive their file shrinking.
//!
//! A capture is read through a shared, read-only mapping of its file. If
//! another program truncates the file while it is mapped (rotating or
//! rewriting it; `replay --output` naming its own input did), touching a page
//! past the new end raises SIGBUS, which kills the process without a word.
//!
//! So each mapping is registered in a fixed table that a SIGBUS handler
//! reads. When a fault lands inside a registered mapping, the handler maps
//! anonymous zero pages over the rest of that mapping (from the faulting
//! page on), so that the access completes and reads zeros, and records
//! where the lost bytes begin. The page that holds the file's new end stays
//! mapped, its tail reading as zeros, without any fault.
//!
//! The reader looks once per batch of frames (an atomic load and one
//! `fstat`), and at any zero-length record (what zeros read as): if the file
//! is now shorter than its mapping, or pages were lost, it drops the frames
//! of the batch whose bytes reach past what is left and ends with
//! [`CaptureError::Shrank`](crate::capture::CaptureError), "FILE: the file
//! shrank while it was read". Frames read before the shrink are judged as
//! usual. A frame handed out before the shrink but decoded after it may read
//! zeros where its bytes were lost (it then counts as a truncated or non-IP
//! frame); what a rewritten file holds is no longer the capture anyway.
//!
//! A fault outside every registered mapping is handed to the handler that
//! was there before (the standard library's stack-overflow report), or, if
//! there was none, to the default action: the process dies as it would
//! have.
//!
//! Only Linux has the handler; elsewhere the mapping is unguarded.

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};

use memmap2::Mmap;

/// How many captures can be mapped and guarded at once. A replay maps every
/// capture it is given before reading the first; past this many, a file is
/// read into memory instead of mapped.
const SLOTS: usize = 1024;

/// One registered mapping: where it lies, and where its lost bytes start.
struct Slot {
    /// Start address of the mapping; 0 when the slot is free.
    start: AtomicUsize,
    /// Length of the mapping in bytes.
    len: AtomicUsize,
    /// Address of the first page the handler replaced with zeros;
    /// `usize::MAX` while none was.
    lost_from: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // only to build the table
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    lost_from: AtomicUsize::new(usize::MAX),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];

/// A read-only mapping of a whole file, registered with the SIGBUS handler
/// for as long as it lives.
pub(super) struct Mapping {
    map: Mmap,
    /// The file mapped, to ask its length once it is seen to shrink.
    file: File,
    slot: Option<&'static Slot>,
}

impl Mapping {
    /// Maps `file` (a regular, non-empty file) and registers the mapping.
    /// `Err` with the file back when it cannot be guarded (every slot is
    /// taken) or mapped: the caller reads it instead.
    pub(super) fn new(file: File) -> Result<Mapping, File> {
        // SAFETY: `Mmap::map` is unsafe because the `&[u8]` it gives out
        // is only immutable if nobody changes the file while it is mapped.
        // segwatch opens the file read-only and never writes to it. Another
        // process still could: bytes it appends are not seen, bytes it
        // rewrites are read as whatever they are then (harmless here: the
        // parsers treat every byte as hostile and bounds-check every
        // length), and pages it truncates away are replaced with zeros by
        // the SIGBUS handler (see the module documentation), so every
        // access stays valid.
        #[allow(unsafe_code)]
        let Ok(map) = (unsafe { Mmap::map(&file) }) else {
            return Err(file);
        };
        let slot = guard::register(&map);
        if slot.is_none() && guard::AVAILABLE {
            return Err(file);
        }
        // Only a hint to the kernel's read-ahead; failure changes nothing.
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(Mapping { map, file, slot })
    }

    /// The mapped bytes.
    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The mapping itself, for advice.
    pub(super) fn map(&self) -> &Mmap {
        &self.map
    }

    /// True once a page of the mapping was lost to the file shrinking: an
    /// atomic load, cheap enough for every batch of frames.
    #[inline]
    pub(super) fn lost_pages(&self) -> bool {
        self.slot
            .is_some_and(|slot| slot.lost_from.load(Ordering::Acquire) != usize::MAX)
    }

    /// Offset from which the mapped bytes are no longer the file's: the
    /// file's length now, if it shrank, or the first page lost to it
    /// shrinking (the file may have grown again since). `None` while the
    /// file is whole. Asks the file system: not for every frame.
    pub(super) fn lost_from(&self) -> Option<usize> {
        let lost_page = self.slot.and_then(|slot| {
            let lost = slot.lost_from.load(Ordering::Acquire);
            (lost != usize::MAX).then(|| lost.saturating_sub(self.map.as_ptr() as usize))
        });
        let len = self
            .file
            .metadata()
            .ok()
            .and_then(|meta| usize::try_from(meta.len()).ok())
            .filter(|&len| len < self.map.len());
        match (lost_page, len) {
            (Some(page), Some(len)) => Some(page.min(len)),
            (one, other) => one.or(other),
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            // Unregistered before `map` is unmapped (fields drop after this).
            slot.lost_from.store(usize::MAX, Ordering::Relaxed);
            slot.len.store(0, Ordering::Relaxed);
            slot.start.store(0, Ordering::Release);
        }
    }
}

#[cfg(target_os = "linux")]
// A signal handler and the system calls it makes (sigaction, mmap) have no
// safe interface; each unsafe block says why it is sound.
#[allow(unsafe_code)]
mod guard {
    //! The SIGBUS handler and the registration of mappings.

    use std::sync::Once;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use memmap2::Mmap;

    use super::{Slot, TABLE};

    pub(super) const AVAILABLE: bool = true;

    /// The action SIGBUS had before ours, to pass foreign faults on to.
    static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
    /// The page size, read once outside the handler.
    static PAGE: AtomicUsize = AtomicUsize::new(4096);

    /// Registers `map`; `None` when the table is full or the handler could
    /// not be installed.
    pub(super) fn register(map: &Mmap) -> Option<&'static Slot> {
        if !install() {
            return None;
        }
        let start = map.as_ptr() as usize;
        let slot = TABLE.iter().find(|slot| {
            slot.start
                .compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        // Until `len` is set, the handler skips the slot (free slots have a
        // length of 0); no fault can come from the mapping before `register`
        // returns it.
        slot.lost_from.store(usize::MAX, Ordering::Relaxed);
        slot.len.store(map.len(), Ordering::Release);
        Some(slot)
    }

    /// Installs the handler once; false if that failed.
    fn install() -> bool {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if let Ok(page) = usize::try_from(page)
                && page.is_power_of_two()
            {
                PAGE.store(page, Ordering::Relaxed);
            }
            // SAFETY: a zeroed sigaction is a valid value of the C struct;
            // the fields that matter are set below, and `sigaction` only
            // reads `action` and writes `previous`.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_sigbus as *const () as usize;
                // SA_ONSTACK: run on the alternate stack where the standard
                // library set one up (a fault may come from a thread deep in
                // its stack).
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                let mut previous: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0 {
                    let _ = PREVIOUS.set(previous);
                }
            }
        });
        PREVIOUS.get().is_some()
    }

    /// Runs in signal context: only atomics, `mmap` and `sigaction`, which
    /// are async-signal-safe system calls.
    extern "C" fn on_sigbus(
        signal: libc::c_int,
        info: *mut libc::siginfo_t,
        context: *mut libc::c_void,
    ) {
        // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
        let address = unsafe { (*info).si_addr() } as usize;
        let page = PAGE.load(Ordering::Relaxed);
        for slot in &TABLE {
            let start = slot.start.load(Ordering::Acquire);
            let len = slot.len.load(Ordering::Acquire);
            if start == 0 || address < start || address - start >= len {
                continue;
            }
            let from = address & !(page - 1);
            let end = (start + len).next_multiple_of(page);
            // SAFETY: [from, end) lies inside a live mapping of ours (it is
            // registered until just before it is unmapped, and a fault in it
            // means it is in use); replacing its pages with zero pages of the
            // same protection keeps every borrowed slice valid.
            let replaced = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    end - from,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if replaced != libc::MAP_FAILED {
                slot.lost_from.fetch_min(from, Ordering::AcqRel);
                return;
            }
            break;
        }
        // Not ours (or the zero pages could not be mapped): what would have
        // happened without us.
        match PREVIOUS.get() {
            Some(previous)
                if previous.sa_sigaction != libc::SIG_DFL
                    && previous.sa_sigaction != libc::SIG_IGN =>
            {
                if previous.sa_flags & libc::SA_SIGINFO != 0 {
                    // SAFETY: installed with SA_SIGINFO, so it has this
                    // signature.
                    let handler: extern "C" fn(
                        libc::c_int,
                        *mut libc::siginfo_t,
                        *mut libc::c_void,
                    ) = unsafe { std::mem::transmute(previous.sa_sigaction) };
                    handler(signal, info, context);
                } else {
                    // SAFETY: installed without SA_SIGINFO: a plain handler.
                    let handler: extern "C" fn(libc::c_int) =
                        unsafe { std::mem::transmute(previous.sa_sigaction) };
                    handler(signal);
                }
            }
            _ => {
                // Back to the default action: the faulting access runs
                // again on return and the process dies of SIGBUS.
                // SAFETY: resetting a signal's action is always valid.
                unsafe {
                    libc::signal(libc::SIGBUS, libc::SIG_DFL);
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod guard {
    //! No handler: mappings are not guarded.

    use memmap2::Mmap;

    use super::Slot;

    pub(super) const AVAILABLE: bool = false;

    pub(super) fn register(_map: &Mmap) -> Option<&'static Slot> {
        None
    }
}
