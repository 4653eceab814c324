//! AF_PACKET capture through a TPACKET_V3 memory-mapped ring.
//!
//! Hand-written on libc because no crate offers what a SPAN-port sensor
//! needs together: pnet's datalink channel reads one packet per `recvfrom`
//! into a 4 KiB buffer and lost packets at about 200 k packets/s over a
//! veth pair (toolchain.md); it has no ring, no kernel drop counters and no
//! BPF. Here the kernel fills blocks of packets in a shared ring; a worker
//! waits for a block with one `poll`, reads every packet of it in place
//! (no copy, no system call per packet) and hands the block back.
//!
//! Several workers on one interface join one PACKET_FANOUT group with
//! flow-symmetric hashing and the defragmentation flag, so both directions
//! of a flow and all fragments of a datagram reach the same worker. The
//! group id comes from the kernel (PACKET_FANOUT_FLAG_UNIQUEID), so two
//! instances on one host can never join each other's group.
//!
//! Layouts are those of `linux/if_packet.h`; offsets are spelled out where
//! the ring is read.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::capture::Frame;
use crate::wire::LinkType;

use super::{CaptureOptions, LiveError, LiveStats};

const ETH_P_ALL: u16 = 0x0003;
const TPACKET_V3: libc::c_int = 2;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

/// Bytes per ring block: large enough for hundreds of small packets, so a
/// busy interface costs one `poll` per block, not per packet.
const BLOCK_SIZE: usize = 1 << 20;
/// TPACKET_V3 ignores frame sizes for reading, but the ring request needs
/// one (a multiple of 16 that holds the headers).
const FRAME_SIZE: usize = 2048;
/// A block is handed over at the latest this long after its first packet,
/// so a quiet interface still delivers promptly.
const BLOCK_TIMEOUT_MS: u32 = 20;

/// The `tpacket_req3` ring request.
#[repr(C)]
struct RingRequest {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

/// `packet_mreq`, for promiscuous mode.
#[repr(C)]
struct MembershipRequest {
    ifindex: libc::c_int,
    kind: libc::c_ushort,
    alen: libc::c_ushort,
    address: [u8; 8],
}

/// `tpacket_stats_v3`.
#[repr(C)]
#[derive(Default)]
struct RingStats {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

/// One `cBPF` instruction (`sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BpfInstruction {
    /// Opcode.
    pub code: u16,
    /// Jump if true.
    pub jt: u8,
    /// Jump if false.
    pub jf: u8,
    /// Constant.
    pub k: u32,
}

/// `sock_fprog`.
#[repr(C)]
struct BpfProgram {
    len: libc::c_ushort,
    filter: *const BpfInstruction,
}

fn os_error(interface: &str, what: &str) -> LiveError {
    LiveError::new(interface, what, io::Error::last_os_error())
}

fn set_option<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points at a live `T` of the size passed.
    let status = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_option<T: Default>(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live `T`, `len` its size; the kernel writes at
    // most `len` bytes.
    let status =
        unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut T).cast(), &mut len) };
    if status == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The interface's index, or a one-line error saying it does not exist.
pub fn interface_index(interface: &str) -> Result<u32, LiveError> {
    let found = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface);
    match found {
        Some(i) => Ok(i.index),
        None => {
            // pnet lists interfaces of this namespace through getifaddrs,
            // which skips some kinds; ask the kernel directly as well.
            let name = CString::new(interface)
                .map_err(|_| LiveError::message(interface, "not an interface name"))?;
            // SAFETY: `name` is a valid NUL-terminated string.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if index == 0 {
                Err(LiveError::message(interface, "no such interface"))
            } else {
                Ok(index)
            }
        }
    }
}

/// A fanout group shared by one interface's workers.
#[derive(Clone, Copy, Debug)]
pub enum Fanout {
    /// The first socket asks the kernel for a unique group id.
    New,
    /// Later sockets join the group the first one got.
    Join(u16),
}

/// One worker's socket and ring.
pub struct AfPacket {
    interface: String,
    fd: OwnedFd,
    ring: *mut u8,
    ring_len: usize,
    block_count: usize,
    next_block: usize,
    fanout_id: u16,
}

// SAFETY: the ring is owned by this value alone (one worker thread reads
// it); the kernel is the only other party.
unsafe impl Send for AfPacket {}

impl std::fmt::Debug for AfPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacket")
            .field("interface", &self.interface)
            .field("blocks", &self.block_count)
            .field("fanout_id", &self.fanout_id)
            .finish()
    }
}

impl AfPacket {
    /// Opens a socket on `options.interface` with a ring of about
    /// `options.buffer_bytes`, joins (or creates) the fanout group, and
    /// applies the snap length and BPF program. Errors name the interface
    /// and, when permission is missing, the capability.
    pub fn open(
        options: &CaptureOptions,
        fanout: Fanout,
        filter: Option<&[BpfInstruction]>,
    ) -> Result<AfPacket, LiveError> {
        let interface = options.interface.as_str();
        let index = interface_index(interface)?;
        // SAFETY: plain socket creation; the result is checked.
        // Protocol 0: the socket receives nothing until it is bound to the
        // interface (with ETH_P_ALL), so no other interface's packets slip
        // into the ring first.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os_error(interface, "cannot open an AF_PACKET socket"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let bad = |what: &str| os_error(interface, what);

        set_option(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_VERSION,
            &TPACKET_V3,
        )
        .map_err(|_| bad("cannot select TPACKET_V3"))?;
        // The snap length first, so no packet is ever copied whole when it
        // should not be: a one-instruction program "accept, cut to N".
        let snap = [BpfInstruction {
            code: 0x06, // BPF_RET | BPF_K
            jt: 0,
            jf: 0,
            k: options.snaplen,
        }];
        let program = filter.unwrap_or(&snap);
        let fprog = BpfProgram {
            len: program.len() as libc::c_ushort,
            filter: program.as_ptr(),
        };
        set_option(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &fprog,
        )
        .map_err(|_| bad("cannot attach the capture filter"))?;

        let block_count = (options.buffer_bytes / BLOCK_SIZE).max(4);
        let request = RingRequest {
            block_size: BLOCK_SIZE as u32,
            block_nr: block_count as u32,
            frame_size: FRAME_SIZE as u32,
            frame_nr: (BLOCK_SIZE / FRAME_SIZE * block_count) as u32,
            retire_blk_tov: BLOCK_TIMEOUT_MS,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        set_option(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_RX_RING, &request)
            .map_err(|_| bad("cannot set up the receive ring (lower capture.buffer_mib?)"))?;
        let ring_len = BLOCK_SIZE * block_count;
        // SAFETY: maps the ring the kernel just allocated for this socket;
        // checked below, unmapped on drop.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED,
                fd.as_raw_fd(),
                0,
            )
        };
        let ring = if ring == libc::MAP_FAILED {
            // MAP_LOCKED needs RLIMIT_MEMLOCK room; without it, unlocked.
            // SAFETY: as above.
            let ring = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    ring_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if ring == libc::MAP_FAILED {
                return Err(bad("cannot map the receive ring"));
            }
            ring
        } else {
            ring
        };
        let mut capture = AfPacket {
            interface: interface.to_string(),
            fd,
            ring: ring.cast(),
            ring_len,
            block_count,
            next_block: 0,
            fanout_id: 0,
        };

        // SAFETY: an all-zero sockaddr_ll is valid; fields are set below.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = ETH_P_ALL.to_be();
        address.sll_ifindex = index as i32;
        // SAFETY: `address` is a valid sockaddr_ll of the size passed.
        let status = unsafe {
            libc::bind(
                capture.fd.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if status != 0 {
            return Err(bad("cannot bind to the interface"));
        }
        if options.promiscuous {
            let membership = MembershipRequest {
                ifindex: index as i32,
                kind: PACKET_MR_PROMISC,
                alen: 0,
                address: [0; 8],
            };
            set_option(
                capture.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_ADD_MEMBERSHIP,
                &membership,
            )
            .map_err(|_| bad("cannot enter promiscuous mode"))?;
        }
        let mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG;
        let argument: u32 = match fanout {
            Fanout::New => (mode | PACKET_FANOUT_FLAG_UNIQUEID) << 16,
            Fanout::Join(id) => u32::from(id) | (mode << 16),
        };
        set_option(
            capture.fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_FANOUT,
            &argument,
        )
        .map_err(|_| bad("cannot join the fanout group"))?;
        let joined: u32 = get_option(capture.fd.as_raw_fd(), libc::SOL_PACKET, PACKET_FANOUT)
            .map_err(|_| bad("cannot read the fanout group"))?;
        capture.fanout_id = (joined & 0xffff) as u16;
        Ok(capture)
    }

    /// The fanout group this socket is in, for the interface's other workers.
    pub fn fanout_id(&self) -> u16 {
        self.fanout_id
    }

    /// The block descriptor's status word (offset 8: after `version` and
    /// `offset_to_priv`), shared with the kernel.
    fn status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: `block < block_count`, so the word lies inside the
        // mapping, 4-byte aligned (blocks are page aligned); the kernel
        // writes it, so it is read and written atomically.
        unsafe { &*(self.ring.add(block * BLOCK_SIZE + 8).cast::<AtomicU32>()) }
    }

    /// Waits at most `timeout` for the next block of packets.
    pub fn next_block(&mut self, timeout: Duration) -> Result<Option<Block<'_>>, LiveError> {
        let block = self.next_block;
        if self.status(block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            let mut poll = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            let millis = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, millis) };
            if ready < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    return Ok(None);
                }
                return Err(LiveError::new(&self.interface, "poll failed", error));
            }
            if self.status(block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                return Ok(None);
            }
        }
        self.next_block = (block + 1) % self.block_count;
        // SAFETY: the block is the user's until its status is handed back
        // (in `Block::drop`); it lies inside the mapping.
        let data =
            unsafe { std::slice::from_raw_parts(self.ring.add(block * BLOCK_SIZE), BLOCK_SIZE) };
        Ok(Some(Block {
            data,
            status: self.status(block),
        }))
    }

    /// The kernel's counters since the last call (PACKET_STATISTICS resets
    /// them on each read): packets received (drops included) and dropped.
    pub fn take_stats(&self) -> LiveStats {
        match get_option::<RingStats>(self.fd.as_raw_fd(), libc::SOL_PACKET, PACKET_STATISTICS) {
            Ok(stats) => LiveStats {
                received: u64::from(stats.packets),
                dropped: u64::from(stats.drops),
            },
            Err(_) => LiveStats::default(),
        }
    }
}

impl Drop for AfPacket {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once; blocks borrow
        // `self`, so none is alive.
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_len);
        }
    }
}

/// A block of packets, the worker's until dropped.
pub struct Block<'a> {
    data: &'a [u8],
    status: &'a AtomicU32,
}

fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        data.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

fn u16_at(data: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        data.get(offset..offset + 2)?.try_into().ok()?,
    ))
}

impl<'a> Block<'a> {
    /// The block's packets, in arrival order.
    pub fn frames(&self) -> BlockFrames<'a> {
        // tpacket_hdr_v1 after the 8-byte descriptor head: block_status
        // (8), num_pkts (12), offset_to_first_pkt (16).
        let count = u32_at(self.data, 12).unwrap_or(0);
        let first = u32_at(self.data, 16).unwrap_or(0) as usize;
        BlockFrames {
            data: self.data,
            offset: first,
            left: count,
        }
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        self.status.store(TP_STATUS_KERNEL, Ordering::Release);
    }
}

/// Iterator over a block's packets.
pub struct BlockFrames<'a> {
    data: &'a [u8],
    offset: usize,
    left: u32,
}

impl<'a> Iterator for BlockFrames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // tpacket3_hdr: next_offset (0), sec (4), nsec (8), snaplen (12),
        // len (16), status (20), mac (24, u16), net (26, u16), then
        // hv1: rxhash (28), vlan_tci (32), vlan_tpid (36, u16).
        let header = self.data.get(self.offset..)?;
        let next = u32_at(header, 0)? as usize;
        let seconds = u64::from(u32_at(header, 4)?);
        let nanos = u64::from(u32_at(header, 8)?);
        let captured = u32_at(header, 12)? as usize;
        let wire_len = u32_at(header, 16)?;
        let status = u32_at(header, 20)?;
        let mac = usize::from(u16_at(header, 24)?);
        let vlan = (status & TP_STATUS_VLAN_VALID != 0)
            .then(|| u32_at(header, 32).map(|tci| (tci & 0x0fff) as u16))
            .flatten();
        let data = header.get(mac..mac + captured)?;
        self.offset = if next == 0 {
            self.left = 0;
            self.data.len()
        } else {
            self.offset + next
        };
        Some(Frame {
            ts_ns: seconds * 1_000_000_000 + nanos,
            // The out-of-band tag was 4 bytes on the wire.
            orig_len: wire_len + if vlan.is_some() { 4 } else { 0 },
            link: LinkType::ETHERNET,
            data,
            vlan,
        })
    }
}
