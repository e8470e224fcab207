"""Entry point of the probes: ``python bench/probes COMMAND ...`` (see bench/probes/__init__.py).

Run by path, not with ``-m``, so that it starts from any working directory inside a
namespace; the checkout goes on sys.path for the ``bench.probes`` imports.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import probes
from bench.probes.bgp_generator import generate
from bench.probes.bgp_sniffer import sniff_bgp
from bench.probes.fdb_counter import count_fdb
from bench.probes.frame_sender import send_frames
from bench.probes.neigh_watcher import watch_neigh
from bench.probes.vtep_counter import count_vtep


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/probes", description=probes.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    count = sub.add_parser("count-fdb")
    count.add_argument("--devices", required=True)
    count.add_argument("--target", type=int, required=True)
    count.add_argument("--every", type=int, default=1000)
    count.add_argument("--rcvbuf", type=int, default=256 << 20)
    count.add_argument("--keep-going", action="store_true")
    count.add_argument("--mac-prefix", default="", help="count only these MACs (e.g. 02:30)")
    count.add_argument(
        "--follow", action="store_true", help="report gains and losses; 'empty' after 'done'"
    )
    vtep = sub.add_parser("count-vtep")
    vtep.add_argument("--every-s", type=float, default=0.2)
    vtep.add_argument("--rcvbuf", type=int, default=256 << 20)
    watch = sub.add_parser("watch-neigh")
    watch.add_argument("--mac-prefix", default="")
    watch.add_argument("--rcvbuf", type=int, default=16 << 20)
    sniff = sub.add_parser("sniff-bgp")
    sniff.add_argument("--device", default="eth0")
    sniff.add_argument("--mac-prefix", default="", help="MACs to look for (e.g. 02:30)")
    sniff.add_argument("--withdraws", action="store_true", help="report EVPN withdraws")
    send = sub.add_parser("send-frames")
    send.add_argument("--device", default="eth0")
    gen = sub.add_parser("bgp-generate")
    gen.add_argument("--local", required=True, help="our address (and BGP identifier)")
    gen.add_argument("--peer", required=True, help="the route reflector")
    gen.add_argument("--asn", type=int, default=65000)
    gen.add_argument("--hold-time", type=int, default=90)
    gen.add_argument("--routes", type=int, required=True, help="type 2 routes")
    gen.add_argument("--vnis", type=int, required=True)
    gen.add_argument("--vni-base", type=int, default=1000)
    gen.add_argument("--vteps", required=True, help="next hops, comma separated")
    gen.add_argument("--mac-tag", type=int, default=0x20, help="second octet of the MACs")
    gen.add_argument("--no-imet", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if args.command == "count-fdb":
            return count_fdb(args)
        if args.command == "count-vtep":
            return count_vtep(args)
        if args.command == "watch-neigh":
            return watch_neigh(args)
        if args.command == "bgp-generate":
            return generate(args)
        if args.command == "sniff-bgp":
            return sniff_bgp(args)
        return send_frames(args)
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
