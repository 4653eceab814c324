//! Dropping root once the capture is open.
//!
//! Opening AF_PACKET sockets needs CAP_NET_RAW (promiscuous mode and
//! fanout go through the socket and need nothing more); nothing after that
//! does. A daemon started
//! as root with `process.user` set switches to that user's uid and gid
//! (and its supplementary groups) once its sockets and listeners are open.

use std::ffi::CString;

/// Why the process could not switch to `process.user`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivilegeError {
    /// A name that cannot be a user name (it holds a NUL byte).
    #[error("user {0:?}: invalid name")]
    InvalidName(String),
    /// No such user on this system.
    #[error("user {0:?}: no such user")]
    NoSuchUser(String),
    /// The system refused the switch (not started as root).
    #[error("cannot switch to user {user:?}: {source} (start as root to use process.user)")]
    Switch {
        /// The user.
        user: String,
        /// The system's error.
        source: std::io::Error,
    },
}

/// Switches the whole process to `user`.
pub fn drop_to(user: &str) -> Result<(), PrivilegeError> {
    let name = CString::new(user).map_err(|_| PrivilegeError::InvalidName(user.to_owned()))?;
    let (uid, gid) = lookup(&name).ok_or_else(|| PrivilegeError::NoSuchUser(user.to_owned()))?;
    // SAFETY: plain libc calls with a valid C string and integer ids; glibc
    // applies set*id to every thread of the process (nptl's setxid).
    #[allow(unsafe_code)]
    let failed = unsafe {
        libc::initgroups(name.as_ptr(), gid) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
    };
    if failed {
        return Err(PrivilegeError::Switch {
            user: user.to_owned(),
            source: std::io::Error::last_os_error(),
        });
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
        let error = drop_to("no-such-user-segwatch").unwrap_err();
        assert!(matches!(error, PrivilegeError::NoSuchUser(_)), "{error}");
        assert_eq!(
            error.to_string(),
            "user \"no-such-user-segwatch\": no such user"
        );
    }
}
