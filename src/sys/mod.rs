//! The system calls segwatch makes through libc outside capture (the capture
//! rings and the file mapping live in `capture/`): memory advice and the
//! CPU's prefetch hint, socket peeks and queue sizes, the host name, and
//! switching to an unprivileged user. Each is a safe function; every
//! `unsafe` block says why it is sound. The rest of the crate, `capture/`
//! aside, forbids `unsafe`.

mod files;
mod memory;
mod net;
mod process;

pub use files::replace_file;
pub use memory::{
    map_replaced_only_file, page_size, peak_resident_bytes, populate_for_writing, prefetch,
};
pub use net::{recv_nonblocking, unsent_bytes};
pub use process::{effective_uid, hostname, lookup_user, switch_user};
