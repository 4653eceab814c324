//! What std's sockets do not offer: reading or peeking without blocking on
//! a blocking socket, and how much written data the peer has not yet
//! acknowledged.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Reads what is waiting on `socket` into `buf` without blocking (and
/// without consuming it with `peek`): `Ok(0)` when the peer closed,
/// `WouldBlock` when nothing is there.
pub fn recv_nonblocking(socket: BorrowedFd<'_>, buf: &mut [u8], peek: bool) -> io::Result<usize> {
    let flags = if peek {
        libc::MSG_PEEK | libc::MSG_DONTWAIT
    } else {
        libc::MSG_DONTWAIT
    };
    // SAFETY: the pointer and length describe `buf`, valid and writable for
    // the duration of the call; the descriptor is borrowed, so open.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Bytes written to the TCP `socket` that the peer has not acknowledged
/// (Linux SIOCOUTQ); `None` when the kernel does not say.
pub fn unsent_bytes(socket: BorrowedFd<'_>) -> Option<usize> {
    let mut bytes: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one c_int through the pointer, which points at
    // `bytes`; the descriptor is borrowed, so open.
    let status = unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            libc::TIOCOUTQ, /* == SIOCOUTQ for sockets */
            &mut bytes,
        )
    };
    (status == 0).then_some(bytes.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn peeks_without_consuming_and_sees_the_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut buf = [0u8; 8];
        let nothing = recv_nonblocking(server.as_fd(), &mut buf, true).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        client.write_all(b"hi").unwrap();
        // Blocking until the bytes arrive would be a test of the kernel:
        // read them blocking once, through std, after peeking.
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut seen = 0;
        while seen == 0 {
            seen = recv_nonblocking(server.as_fd(), &mut buf, true).unwrap_or(0);
        }
        assert_eq!(&buf[..seen], b"hi");
        assert_eq!(
            recv_nonblocking(server.as_fd(), &mut buf, false).unwrap(),
            2
        );
        assert_eq!(unsent_bytes(client.as_fd()), Some(0));
        drop(client);
        let closed = loop {
            match recv_nonblocking(server.as_fd(), &mut buf, true) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => break other,
            }
        };
        assert_eq!(closed.unwrap(), 0);
    }
}
