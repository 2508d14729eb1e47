"""The floor under the fan-out's cost per frame: one ``send`` of a board-sized frame to each of many loopback sockets.

``python -m bench.send_floor`` opens ``--sockets`` TCP connections to itself on 127.0.0.1 and times, in this
process's CPU (user and system), a bare Python loop that writes one frame of ``--bytes`` to each with
``MSG_DONTWAIT``, as the relay writes a board, but with nothing else around it (no lock, no version check, no
gevent). On loopback the kernel delivers into the receiving socket inside the sender's system call, so this
is what any one-send-per-socket fan-out pays in the web process before its own work; the relay's figure
(``bench.sockets``' fan-out CPU per delivered frame) can only sit above it. The receivers are drained between
rounds, outside the timed loop. Prints the median over ``--rounds`` rounds, in µs per frame.
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics

WEBSOCKET_TEXT_HEADER = b"\x81\x7e"  # a final text frame with a 16-bit length: what a ~1 KB board is sent as


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(sockets: int, size: int, rounds: int) -> list[float]:
    """µs of CPU per frame of each round's send loop."""
    frame = WEBSOCKET_TEXT_HEADER + size.to_bytes(2, "big") + b"x" * size
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(sockets)
    clients, servers = [], []
    try:
        for _ in range(sockets):
            clients.append(socket.create_connection(listener.getsockname()))
            servers.append(listener.accept()[0])
        for client in clients:
            client.setblocking(False)
        figures = []
        for _ in range(rounds):
            started = _cpu()
            for server in servers:
                server.send(frame, socket.MSG_DONTWAIT)
            figures.append((_cpu() - started) / sockets * 1e6)
            for client in clients:
                try:
                    while client.recv(65536):
                        pass
                except BlockingIOError:
                    pass
        return figures
    finally:
        for sock in (*clients, *servers, listener):
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--bytes", type=int, default=1000, help="the frame's payload (a top-10 board is ~1 KB)")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    figures = measure(args.sockets, args.bytes, args.rounds)
    print(
        f"one send a socket, {args.sockets} loopback sockets, {args.bytes}-byte payload: "
        f"median {statistics.median(figures):.2f} µs of CPU a frame (min {min(figures):.2f}, max {max(figures):.2f}, "
        f"{args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
