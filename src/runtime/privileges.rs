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
    let (uid, gid) = crate::sys::lookup_user(&name)
        .ok_or_else(|| PrivilegeError::NoSuchUser(user.to_owned()))?;
    crate::sys::switch_user(&name, uid, gid).map_err(|source| PrivilegeError::Switch {
        user: user.to_owned(),
        source,
    })?;
    tracing::info!(user, uid, gid, "Dropped privileges");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_user_is_refused_by_name() {
        let error = drop_to("no-such-user-segwatch").unwrap_err();
        assert!(matches!(error, PrivilegeError::NoSuchUser(_)), "{error}");
        assert_eq!(
            error.to_string(),
            "user \"no-such-user-segwatch\": no such user"
        );
    }
}
