#!/usr/bin/env python3
"""Hostile HTTP/2 clients for the e2e tests (driven by h2_hostile.rs).

usage: h2_attacks.py ATTACK HOST PORT AUTHORITY [WAIT [TOKEN]]

The `xds_*` attacks and `silent` target the controller's xDS port (xds_hostile.rs): they
speak gRPC (`sluice.v1.Discovery/Stream`), with `authorization: Bearer TOKEN` when given.

Frames are built with hyperframe and hpack (the `h2` package's own codecs), so each attack
sends exactly the bytes it means to, valid or not. Each attack is bounded in frames and time,
then reads what the server sent until it closes the connection or a deadline passes, and
prints one JSON line: whether the server closed the connection, the GOAWAY error code if any,
RST_STREAM codes, response statuses, gRPC statuses by stream, and how many frames were sent.
"""

import json
import socket
import ssl
import sys
import time
import urllib.parse

from hpack import Encoder, Decoder
from hpack.struct import NeverIndexedHeaderTuple
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB


class Client:
    def __init__(self, host, port, rcvbuf=None, settings=None, answer_pings=True, preface=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # A small receive buffer: a client that does not read blocks the server quickly.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect((host, port))
        self.buf = b""
        self.closed = False
        self.goaway = None
        self.rst = {}
        self.statuses = {}
        self.grpc = {}
        self.sent = 0
        self.pings = 0
        self.answer_pings = answer_pings
        self.decoder = Decoder()
        self.decoder.max_header_list_size = 1 << 20
        if not preface:
            return
        s = SettingsFrame(0)
        for key, value in (settings or {}).items():
            s.settings[key] = value
        self.sock.sendall(PREFACE + s.serialize())

    def send(self, frames, timeout=5.0):
        """Sends frames; False if the server stopped reading (or closed) before they all went."""
        data = b"".join(f.serialize() for f in frames)
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except (socket.timeout, OSError):
            return False
        self.sent += len(frames)
        return True

    def poll(self, timeout):
        """Reads for up to `timeout` seconds (less if the server closes); answers PINGs."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                return
            except OSError:
                self.closed = True
                return
            if not chunk:
                self.closed = True
                return
            self.buf += chunk
            self._parse()

    def _parse(self):
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9 : 9 + length]))
            self.buf = self.buf[9 + length :]
            if isinstance(frame, GoAwayFrame):
                self.goaway = frame.error_code
            elif isinstance(frame, RstStreamFrame):
                self.rst[frame.error_code] = self.rst.get(frame.error_code, 0) + 1
            elif isinstance(frame, HeadersFrame):
                try:
                    headers = dict(self.decoder.decode(frame.data))
                    status = headers.get(b":status", headers.get(":status"))
                    if isinstance(status, bytes):
                        status = status.decode()
                    if status is not None:
                        self.statuses[status] = self.statuses.get(status, 0) + 1
                    grpc = headers.get(b"grpc-status", headers.get("grpc-status"))
                    if grpc is not None:
                        message = headers.get(b"grpc-message", headers.get("grpc-message", ""))
                        if isinstance(message, bytes):
                            message = message.decode()
                        # gRPC percent-encodes its messages.
                        message = urllib.parse.unquote(message)
                        self.grpc[str(frame.stream_id)] = {"status": int(grpc), "message": message}
                except Exception:  # trailers split across CONTINUATION: not needed here
                    pass
            elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                self.pings += 1
                if not self.answer_pings:
                    continue
                try:
                    self.sock.sendall(PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize())
                except OSError:
                    pass

    def report(self, attack, **extra):
        out = {
            "attack": attack,
            "closed": self.closed,
            "goaway": self.goaway,
            "rst": {str(k): v for k, v in self.rst.items()},
            "statuses": self.statuses,
            "grpc": self.grpc,
            "sent": self.sent,
            "pings": self.pings,
        }
        out.update(extra)
        print(json.dumps(out))


def request_block(authority, path="/", extra=()):
    """A header block with no dynamic-table insertions, so the same bytes can open any stream."""
    headers = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", authority),
        (":path", path),
    ] + list(extra)
    return Encoder().encode([NeverIndexedHeaderTuple(k, v) for k, v in headers])


def headers(stream, block, end_stream=True, end_headers=True):
    flags = []
    if end_stream:
        flags.append("END_STREAM")
    if end_headers:
        flags.append("END_HEADERS")
    return HeadersFrame(stream, block, flags=flags)


def open_and_reset(c, block, batches, per_batch, gap):
    """Batches of streams opened and cancelled: each HEADERS followed at once by its
    RST_STREAM when `gap` is 0, else the batch's HEADERS, `gap` seconds, then its resets."""
    stream = 1
    for _ in range(batches):
        ids = [stream + 2 * i for i in range(per_batch)]
        stream += 2 * per_batch
        resets = [RstStreamFrame(i, error_code=CANCEL) for i in ids]
        if gap == 0:
            sent = c.send([f for i, r in zip(ids, resets) for f in (headers(i, block), r)])
        else:
            sent = c.send([headers(i, block) for i in ids])
            c.poll(gap)
            sent = sent and not c.closed and c.send(resets)
        if not sent:
            break
        c.poll(0.001)
        if c.closed:
            break
    c.poll(10)


def rapid_reset(c, authority):
    """CVE-2023-44487: open a stream and cancel it at once, as fast as possible (up to 20,000
    streams)."""
    open_and_reset(c, request_block(authority), 200, 100, 0)


def spaced_reset(c, authority):
    """CVE-2023-44487 spaced out: 50 streams opened, left 20 ms to start (their requests go
    upstream, to an answer that takes 2 s), then cancelled; and again (up to 2,000 streams)."""
    open_and_reset(c, request_block(authority, "/?sleep_ms=2000"), 40, 50, 0.02)


def empty_data_flood(c, authority):
    """CVE-2019-9518: a request whose body comes as empty DATA frames, without end."""
    block = request_block(authority, "/", [("content-length", "1")])
    frames = [headers(1, block, end_stream=False)] + [DataFrame(1, b"") for _ in range(10000)]
    c.send(frames)
    c.poll(10)


def continuation_flood(c, authority):
    """One header block that never ends: CONTINUATION frames without END_HEADERS."""
    block = request_block(authority)
    frames = [headers(1, block, end_stream=True, end_headers=False)]
    filler = Encoder().encode([NeverIndexedHeaderTuple("x-filler", "f" * 1000)])
    for _ in range(100):  # up to 10,000 frames, ~10 MB
        frames += [ContinuationFrame(1, filler) for _ in range(100)]
        if not c.send(frames):
            break
        frames = []
        c.poll(0.001)
        if c.closed:
            break
    c.poll(10)


def hpack_bomb(c, authority):
    """A 4 KB header put once in the dynamic table, then referenced thousands of times per
    request: a few KB on the wire, tens of MB decoded."""
    encoder = Encoder()
    base = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", authority),
        (":path", "/bomb"),
    ]
    big = ("x-bomb", "b" * 4000)
    first = encoder.encode(base + [big])  # indexes x-bomb at 62
    rest = request_block(authority, "/bomb")
    bomb = rest + bytes([0x80 | 62]) * 16000
    stream = 1
    frames = [headers(stream, first)]
    stream += 2
    for _ in range(20):  # up to 2,000 bombs
        for _ in range(100):
            frames.append(headers(stream, bomb))
            stream += 2
        if not c.send(frames):
            break
        frames = []
        c.poll(0.01)
        if c.closed:
            break
    c.poll(10)


def settings_flood(c, authority, wait):
    """SETTINGS frames as fast as possible, never reading the ACKs each one demands."""
    frame = SettingsFrame(0)
    for _ in range(200):  # up to 2,000,000 frames
        if not c.send([frame] * 10000, timeout=2.0):
            break
    time.sleep(wait)
    c.poll(10)


def ping_flood(c, authority, wait):
    """PINGs as fast as the server answers, with every ACK read (by a thread, so the server's
    writes never block and it never stops reading): up to 1,000,000 PINGs (17 MB). Reports the
    ACKs received; frames are only split by their 9-byte heads (parsing 1,000,000 frames with
    hyperframe would take longer than the flood)."""
    import threading

    acks = [0]
    stop = threading.Event()

    def read():
        buf, start = b"", 0
        while True:
            try:
                chunk = c.sock.recv(1 << 16)
            except socket.timeout:
                if stop.is_set():
                    return
                continue
            except OSError:
                chunk = b""
            if not chunk:
                c.closed = True
                return
            buf = buf[start:] + chunk
            start = 0
            while len(buf) - start >= 9:
                length = int.from_bytes(buf[start : start + 3], "big")
                if len(buf) - start < 9 + length:
                    break
                kind, flags = buf[start + 3], buf[start + 4]
                if kind == 0x6 and flags & 0x1:
                    acks[0] += 1
                elif kind == 0x7:
                    c.goaway = int.from_bytes(buf[start + 13 : start + 17], "big")
                start += 9 + length

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    batch = PingFrame(0, b"flooding").serialize() * 10000
    deadline = time.monotonic() + 30
    # Generous: a busy CI machine may leave the server unscheduled for a while, and a send
    # that gave up would end the flood early (a partial batch cannot be sent again).
    c.sock.settimeout(10.0)
    for _ in range(100):
        if c.closed or time.monotonic() > deadline:
            break
        try:
            c.sock.sendall(batch)
        except OSError:
            break
        c.sent += 10000
    # The ACKs of what was sent, or the close, arrive within `wait`.
    reader.join(wait)
    stop.set()
    reader.join(5)
    return acks[0]


def never_reads(c, authority, wait):
    """Opens big responses with huge windows, then never reads: the server must neither buffer
    them all nor keep the connection."""
    c.send([WindowUpdateFrame(0, window_increment=(1 << 31) - 1 - 65535)])
    block = request_block(authority, "/?bytes=4194304")
    c.send([headers(1 + 2 * i, block) for i in range(100)])
    time.sleep(wait)
    c.poll(10)


def too_many_streams(c, authority, wait):
    """300 streams that never finish their request body: past the limit they are refused."""
    block = request_block(authority, "/hold", [("content-length", "10")])
    c.send([headers(1 + 2 * i, block, end_stream=False) for i in range(300)])
    c.poll(wait)


def stall_stream(c, authority, wait):
    """A live client (it reads, answers PINGs, keeps the connection window open) that never
    opens stream 1's window after its first 64 KB: only that stream must be given up. After
    `wait`, it opens the window to see what the server did with the stream."""
    c.send([WindowUpdateFrame(0, window_increment=(1 << 30))])
    c.send([headers(1, request_block(authority, "/"))])
    c.poll(wait)
    c.send([WindowUpdateFrame(1, window_increment=(1 << 30))])
    c.poll(5)


def grpc_block(authority, token):
    """The request headers of one xDS stream; `authorization` only when `token` is not None."""
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", authority),
        (":path", "/sluice.v1.Discovery/Stream"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    if token is not None:
        headers.append(("authorization", f"Bearer {token}"))
    return Encoder().encode([NeverIndexedHeaderTuple(k, v) for k, v in headers])


def xds_unauthenticated(c, authority, wait):
    """Stream 1 without a token, stream 3 with a wrong one: each must get its gRPC status."""
    c.send([headers(1, grpc_block(authority, None), end_stream=False)])
    c.send([headers(3, grpc_block(authority, "not-the-fleet-token"), end_stream=False)])
    c.poll(wait)


def xds_oversized(c, authority, wait, token, length):
    """One authenticated stream whose first message declares `length` bytes: refused from its
    5-byte prefix, before any of it is buffered."""
    c.send([headers(1, grpc_block(authority, token), end_stream=False)])
    prefix = bytes([0]) + length.to_bytes(4, "big")
    c.send([DataFrame(1, prefix + b"x" * 1000)])
    c.poll(wait)


def xds_too_many_streams(c, authority, wait, token):
    """300 authenticated streams at once that never send a message: past the per-connection
    limit they are refused."""
    block = grpc_block(authority, token)
    c.send([headers(1 + 2 * i, block, end_stream=False) for i in range(300)])
    c.poll(wait)


def main():
    attack, host, port, authority = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    wait = float(sys.argv[5]) if len(sys.argv) > 5 else 4.0
    token = sys.argv[6] if len(sys.argv) > 6 else None
    started = time.monotonic()
    if attack == "rapid_reset":
        c = Client(host, port)
        rapid_reset(c, authority)
    elif attack == "spaced_reset":
        c = Client(host, port)
        spaced_reset(c, authority)
    elif attack == "empty_data_flood":
        c = Client(host, port)
        empty_data_flood(c, authority)
    elif attack == "continuation_flood":
        c = Client(host, port)
        continuation_flood(c, authority)
    elif attack == "hpack_bomb":
        c = Client(host, port)
        hpack_bomb(c, authority)
    elif attack == "settings_flood":
        c = Client(host, port, rcvbuf=4096)
        settings_flood(c, authority, wait)
    elif attack == "ping_flood":
        c = Client(host, port)
        c.poll(0.2)  # the server's preface, read before the reader thread takes the socket
        acks = ping_flood(c, authority, wait)
        c.report(attack, acks=acks, seconds=round(time.monotonic() - started, 2))
        return
    elif attack == "never_reads":
        c = Client(host, port, rcvbuf=4096, settings={SettingsFrame.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
        never_reads(c, authority, wait)
    elif attack == "too_many_streams":
        c = Client(host, port)
        too_many_streams(c, authority, wait)
    elif attack in ("idle_alive", "idle_dead"):
        # An idle connection whose client answers PINGs (alive) or reads but never answers
        # them (dead, say a half-broken middlebox): only the dead one is closed.
        c = Client(host, port, answer_pings=attack == "idle_alive")
        c.poll(wait)
    elif attack == "stall_stream":
        c = Client(host, port)
        stall_stream(c, authority, wait)
    elif attack == "silent":
        # Connects and sends nothing at all, not even the preface.
        c = Client(host, port, preface=False)
        c.poll(wait)
    elif attack.startswith("hold_connections:"):
        # N connections that send the preface and answer PINGs, held for WAIT seconds: how
        # many the server closed at once. Reported on the first; "closed" counts them all.
        n = int(attack.split(":")[1])
        conns = [Client(host, port) for _ in range(n)]
        for conn in conns:
            conn.poll(0.2)
        held_for = time.monotonic()
        while time.monotonic() - held_for < wait:
            for conn in conns:
                conn.poll(0.05)
        c = conns[0]
        c.report(attack, closed_connections=sum(1 for conn in conns if conn.closed),
                 seconds=round(time.monotonic() - started, 2))
        return
    elif attack == "tls_hello_stall":
        # A real TLS ClientHello, then nothing: the handshake never completes.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        sock = socket.create_connection((host, port))
        sock.sendall(outgoing.read())
        closed, received, deadline = False, 0, time.monotonic() + wait
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(1 << 16)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += len(chunk)
        print(json.dumps({"attack": attack, "closed": closed, "received": received,
                          "seconds": round(time.monotonic() - started, 2)}))
        return
    elif attack == "xds_unauthenticated":
        c = Client(host, port)
        xds_unauthenticated(c, authority, wait)
    elif attack.startswith("xds_oversized:"):
        c = Client(host, port)
        xds_oversized(c, authority, wait, token, int(attack.split(":")[1]))
    elif attack == "xds_too_many_streams":
        c = Client(host, port)
        xds_too_many_streams(c, authority, wait, token)
    else:
        sys.exit(f"unknown attack {attack}")
    c.report(attack, seconds=round(time.monotonic() - started, 2))


if __name__ == "__main__":
    main()
