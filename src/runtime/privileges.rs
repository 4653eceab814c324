//! Dropping root once the capture is open.
//!
//! Opening AF_PACKET sockets needs CAP_NET_RAW (promiscuous mode and
//! fanout go through the socket and need nothing more); nothing after that
//! does. A daemon started
//! as root with `process.user` set switches to that user's uid and gid
//! (and its supplementary groups) once its sockets and listeners are open.

use std::ffi::CString;

/// Switches the whole process to `user`. One-line error on failure.
pub fn drop_to(user: &str) -> Result<(), String> {
    let name = CString::new(user).map_err(|_| format!("user {user:?}: invalid name"))?;
    let (uid, gid) = lookup(&name).ok_or_else(|| format!("user {user:?}: no such user"))?;
    // SAFETY: plain libc calls with a valid C string and integer ids; glibc
    // applies set*id to every thread of the process (nptl's setxid).
    #[allow(unsafe_code)]
    let failed = unsafe {
        libc::initgroups(name.as_ptr(), gid) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
    };
    if failed {
        return Err(format!(
            "cannot switch to user {user:?}: {} (start as root to use process.user)",
            std::io::Error::last_os_error()
        ));
    }
    tracing::info!(user, uid, gid, "Dropped privileges");
    Ok(())
}

/// The uid and gid of a user name.
fn lookup(name: &CString) -> Option<(libc::uid_t, libc::gid_t)> {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid `passwd` (integers and null pointers).
    #[allow(unsafe_code)]
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into `entry` and `buffer`, both valid for
    // the lengths given, and sets `found` to `&entry` or null.
    #[allow(unsafe_code)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_users() {
        let root = CString::new("root").unwrap();
        assert_eq!(lookup(&root), Some((0, 0)));
        let nobody = CString::new("no-such-user-segwatch").unwrap();
        assert_eq!(lookup(&nobody), None);
        assert!(
            drop_to("no-such-user-segwatch")
                .unwrap_err()
                .contains("no such user")
        );
    }
}
