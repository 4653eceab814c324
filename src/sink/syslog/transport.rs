//! Syslog transports: the URL, and connections over UDP, TCP and TLS.
//!
//! Two things std does not offer come from [`crate::sys`]: a non-blocking
//! peek to see a receiver's close before writing into a dead connection,
//! and SIOCOUTQ to learn how much written data the receiver has not
//! acknowledged.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::settings::{Endpoint, FeedSettings, Scheme, SettingsError};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one write (or the TLS handshake) may block before the
/// connection counts as failed: a stalled receiver must not hold the feed
/// forever.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

impl Endpoint {
    fn addresses(&self) -> io::Result<Vec<SocketAddr>> {
        let found: Vec<SocketAddr> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        if found.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.host),
            ));
        }
        Ok(found)
    }
}

/// TLS settings that cannot work: a file that cannot be read or holds
/// nothing usable, or a server name that cannot be one. Each names the
/// setting or file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file that cannot be read or parsed.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file without a certificate.
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A CA file none of whose certificates rustls can use.
    #[error("ca_file {}: no usable CA certificate", path.display())]
    NoUsableCa {
        /// The file.
        path: PathBuf,
    },
    /// No `ca_file`, and the platform's trust store holds no usable CA
    /// certificate (or cannot be read).
    #[error(
        "no usable CA certificate in the platform's trust store{problems}; name the receiver's CA \
         with ca_file (or --syslog-ca)"
    )]
    NoPlatformRoots {
        /// What went wrong reading the store, `: ...` when anything did.
        problems: String,
    },
    /// rustls refused the protocol versions.
    #[error("TLS: {0}")]
    Protocol(#[source] rustls::Error),
    /// A client key that cannot be read.
    #[error("client_key {}: {source}", path.display())]
    ClientKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A client certificate rustls refuses (with its key).
    #[error("client certificate {}: {source}", path.display())]
    ClientCertificate {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// Only one of the client certificate and its key.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A server name that is neither a DNS name nor an address.
    #[error("server_name {0:?} is not a DNS name or IP address")]
    ServerName(String),
}

/// TLS settings of a feed, built once at start.
#[derive(Debug)]
pub struct TlsSettings {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl TlsSettings {
    /// Reads the trust roots (`ca_file`, or the platform's store), the
    /// optional client certificate and key, and checks the server name.
    pub fn build(settings: &FeedSettings) -> Result<TlsSettings, TlsError> {
        let roots = match &settings.ca_file {
            Some(ca_file) => file_roots(ca_file)?,
            None => platform_roots()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Protocol)?
            .with_root_certificates(roots);
        let config = match settings.client_identity()? {
            None => builder.with_no_client_auth(),
            Some((cert, key_file)) => {
                let chain = read_certificates(cert)?;
                let key = PrivateKeyDer::from_pem_file(key_file).map_err(|source| {
                    TlsError::ClientKey {
                        path: key_file.to_owned(),
                        source,
                    }
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|source| TlsError::ClientCertificate {
                        path: cert.to_owned(),
                        source,
                    })?
            }
        };
        let name = settings
            .server_name
            .as_deref()
            .unwrap_or(&settings.url.host);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| TlsError::ServerName(name.to_owned()))?;
        Ok(TlsSettings {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// The CA certificates of a PEM file.
fn file_roots(ca_file: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(read_certificates(ca_file)?);
    if added == 0 {
        return Err(TlsError::NoUsableCa {
            path: ca_file.to_owned(),
        });
    }
    Ok(roots)
}

/// The platform's trust store, as rustls-native-certs finds it: on Linux
/// the bundle or directory openssl would use (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` first, then where Debian, RHEL, SUSE, Alpine and others
/// keep it). Unreadable entries are passed over while others are usable.
fn platform_roots() -> Result<rustls::RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    for problem in &found.errors {
        tracing::debug!("Platform trust store: {problem}");
    }
    if added == 0 {
        let problems: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(TlsError::NoPlatformRoots {
            problems: if problems.is_empty() {
                String::new()
            } else {
                format!(": {}", problems.join("; "))
            },
        });
    }
    tracing::debug!(added, ignored, "TLS trust roots from the platform's store");
    Ok(roots)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(bad)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

/// An open connection to the receiver.
pub enum Connection {
    /// A connected UDP socket.
    Udp(UdpSocket),
    /// A TCP stream.
    Tcp(TcpStream),
    /// A TLS session over TCP.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Connection {
    /// Connects to the first address of `endpoint` that answers.
    pub fn open(endpoint: &Endpoint, tls: Option<&TlsSettings>) -> io::Result<Connection> {
        let addresses = endpoint.addresses()?;
        if endpoint.scheme == Scheme::Udp {
            let address = addresses[0];
            let local = if address.is_ipv6() {
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
            } else {
                SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
            };
            let socket = UdpSocket::bind(local)?;
            socket.connect(address)?;
            return Ok(Connection::Udp(socket));
        }
        let mut last_error = None;
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    stream.set_write_timeout(Some(IO_TIMEOUT))?;
                    stream.set_read_timeout(Some(IO_TIMEOUT))?;
                    stream.set_nodelay(true)?;
                    return match tls {
                        None => Ok(Connection::Tcp(stream)),
                        Some(tls) => handshake(stream, tls),
                    };
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no address to connect to")))
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Connection::Udp(socket) => socket.as_fd(),
            Connection::Tcp(stream) => stream.as_fd(),
            Connection::Tls(stream) => stream.sock.as_fd(),
        }
    }

    /// Writes one framed message whole.
    pub fn send(&mut self, message: &[u8]) -> io::Result<()> {
        match self {
            Connection::Udp(socket) => socket.send(message).map(drop),
            Connection::Tcp(stream) => stream.write_all(message),
            Connection::Tls(stream) => {
                stream.write_all(message)?;
                stream.flush()
            }
        }
    }

    /// Why the receiver's side is gone (it closed, reset, or ended TLS),
    /// or `None` while it looks alive. Non-blocking; syslog receivers send
    /// nothing, so anything readable is the end or TLS housekeeping.
    pub fn closed_by_peer(&mut self) -> Option<String> {
        match self {
            Connection::Udp(_) => None,
            Connection::Tcp(stream) => match peek(stream.as_fd()) {
                Peek::Nothing | Peek::Data => None,
                Peek::Closed => Some("the receiver closed the connection".into()),
                Peek::Failed(e) => Some(e.to_string()),
            },
            Connection::Tls(stream) => match peek(stream.sock.as_fd()) {
                Peek::Nothing => None,
                Peek::Closed => Some("the receiver closed the connection".into()),
                Peek::Failed(e) => Some(e.to_string()),
                Peek::Data => {
                    // Session tickets, alerts or close_notify: let rustls
                    // read them without blocking.
                    let mut reader = NonBlockingSocket(stream.sock.as_fd());
                    loop {
                        match stream.conn.read_tls(&mut reader) {
                            Ok(0) => return Some("the receiver closed the connection".into()),
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Some(e.to_string()),
                        }
                    }
                    if let Err(e) = stream.conn.process_new_packets() {
                        return Some(format!("TLS: {e}"));
                    }
                    let mut discard = [0u8; 512];
                    match stream.conn.reader().read(&mut discard) {
                        Ok(0) => Some("the receiver ended the TLS session".into()),
                        _ => None,
                    }
                }
            },
        }
    }

    /// Bytes written that the receiver's TCP has not acknowledged (Linux
    /// SIOCOUTQ); `None` for UDP or when the kernel does not say.
    pub fn unacknowledged(&self) -> Option<usize> {
        if matches!(self, Connection::Udp(_)) {
            return None;
        }
        crate::sys::unsent_bytes(self.fd())
    }
}

fn handshake(stream: TcpStream, tls: &TlsSettings) -> io::Result<Connection> {
    let session = rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
        .map_err(io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(session, stream);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(Connection::Tls(Box::new(stream)))
}

enum Peek {
    Nothing,
    Data,
    Closed,
    Failed(io::Error),
}

/// Looks at the socket's receive side without reading or blocking.
fn peek(socket: BorrowedFd<'_>) -> Peek {
    let mut byte = [0u8; 1];
    match crate::sys::recv_nonblocking(socket, &mut byte, true) {
        Ok(0) => Peek::Closed,
        Ok(_) => Peek::Data,
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Peek::Nothing,
        Err(error) => Peek::Failed(error),
    }
}

/// Reads a blocking socket without blocking (MSG_DONTWAIT), for rustls.
struct NonBlockingSocket<'a>(BorrowedFd<'a>);

impl Read for NonBlockingSocket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::sys::recv_nonblocking(self.0, buf, false)
    }
}
