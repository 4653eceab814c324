#!/usr/bin/env python3
"""Writes a capture full of recognisable applications, for the cost of detection.

    benches/app_rich_capture.py OUT.pcap COPIES CAPTURE.pcap...

Each input capture (classic pcap, Ethernet, IPv4) is copied COPIES times into
one classic pcap, each copy with its own addresses (the second and third bytes
of every IPv4 address XORed with the copy's number) and starting 5 ms after the
one before, all frames in time order. With the DICOM fixtures, the shared
HL7, TLS and HTTP captures (README, "Speed and memory") every flow of the
result is DICOM, HL7, TLS or HTTP. Checksums are left as they were: segwatch
does not check them.
"""

import heapq
import struct
import sys


def frames(path):
    """(seconds from the capture's first frame, frame bytes) of a pcap."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        sys.exit(f"{path}: not a classic pcap")
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    (link,) = struct.unpack(endian + "I", data[20:24])
    if link != 1:
        sys.exit(f"{path}: link type {link}, not Ethernet")
    at, first, out = 24, None, []
    while at + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[at : at + 16])
        ts = sec + frac / (1e9 if nanos else 1e6)
        first = ts if first is None else first
        out.append((ts - first, data[at + 16 : at + 16 + incl]))
        at += 16 + incl
    return out


def moved(frame, copy):
    """The frame with its IPv4 addresses moved to the copy's own."""
    ether = 14
    ethertype = frame[12:14]
    while ethertype == b"\x81\x00":
        ether += 4
        ethertype = frame[ether - 2 : ether]
    if ethertype != b"\x08\x00":
        return frame
    out = bytearray(frame)
    for addr in (ether + 12, ether + 16):
        out[addr + 1] ^= copy >> 8 & 0xFF
        out[addr + 2] ^= copy & 0xFF
    return bytes(out)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out_path, copies, inputs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    captures = [frames(path) for path in inputs]

    def stream(copy, capture):
        for n, (ts, frame) in enumerate(capture):
            yield (0.005 * copy + ts, copy, n, frame)

    streams = [stream(copy, capture) for copy in range(copies) for capture in captures]
    with open(out_path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        start = 1_795_852_800  # 2026-11-28T08:00:00Z
        for ts, copy, _, frame in heapq.merge(*streams):
            frame = moved(frame, copy)
            micros = round(ts * 1e6)
            sec, usec = start + micros // 1_000_000, micros % 1_000_000
            out.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
            out.write(frame)


if __name__ == "__main__":
    main()
