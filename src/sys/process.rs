//! The process: its host name, its effective user, and switching the whole
//! process to another user.

use std::ffi::CStr;
use std::io;

/// The machine's host name; `None` when the system does not say.
pub fn hostname() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the pointer and length describe `buffer`, which outlives the
    // call; gethostname writes at most that many bytes.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    Some(String::from_utf8_lossy(&buffer[..end]).into_owned())
}

/// The process's effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid reads a process attribute and cannot fail.
    unsafe { libc::geteuid() }
}

/// The uid and gid of a user name; `None` when there is no such user.
pub fn lookup_user(name: &CStr) -> Option<(u32, u32)> {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid `passwd` (integers and null pointers).
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into `entry` and `buffer`, both valid for
    // the lengths given, and sets `found` to `&entry` or null; `name` is a
    // valid C string.
    let status = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    (status == 0 && !found.is_null()).then_some((entry.pw_uid, entry.pw_gid))
}

/// Switches the whole process to user `name` (`uid`, `gid`) with its
/// supplementary groups.
pub fn switch_user(name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain libc calls with a valid C string and integer ids; glibc
    // applies set*id to every thread of the process (nptl's setxid).
    let failed = unsafe {
        libc::initgroups(name.as_ptr(), gid) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
    };
    if failed {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_users_and_names_the_host() {
        assert_eq!(lookup_user(c"root"), Some((0, 0)));
        assert_eq!(lookup_user(c"no-such-user-segwatch"), None);
        assert!(hostname().is_some_and(|name| !name.is_empty()));
    }
}
