"""Micro-benchmark of the wire codec against ExaBGP 5.0.15's codec, no network, no root.

    .venv/bin/python bench/bench_codec.py decode --impl ours|exabgp|exabgp-json|none
    .venv/bin/python bench/bench_codec.py encode --impl ours|exabgp|exabgp-grouped|none

decode: ``--updates`` UPDATE bodies of ``--per-update`` type-2 NLRIs each (1,700: what an
FRR route reflector packs in one extended message), MAC only or MAC+IP, one VNI per UPDATE.
- ``ours``: speaker.wire_decode, bytes to the agent's events;
- ``exabgp``: ExaBGP's ``Update.unpack_message``, bytes to ExaBGP's objects only;
- ``exabgp-json``: today's receive path: ExaBGP's objects, its JSON for the API process,
  and the agent's JSON parser (speaker.decode), to the same events.

encode: ``--routes`` local MACs over ``--vnis`` VNIs (each VNI its own RD and RT, so its
own attribute set) into UPDATE messages of at most ``--max-size`` bytes.
- ``ours``: speaker.wire_encode, all changes in one call;
- ``exabgp``: today's advertise path: the API line the agent renders, the launcher's
  grammar and ExaBGP Change, and ExaBGP's UPDATE packing, one UPDATE per route as
  ExaBGP's adj-rib-out sends EVPN;
- ``exabgp-grouped``: ExaBGP Changes, then one ExaBGP Update per attribute set (ExaBGP's
  own packing at its best).

``none`` builds the input only (the set-up cost inside a whole-process figure). The input
is built with our encoder. Prints one JSON object: the timed section's wall and CPU
seconds (set-up and imports excluded) and routes per second.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evpn_agent.model import AdvertChange, MacAdvert, RouteDistinguisher, RouteTarget
from evpn_agent.speaker.wire_encode import encode_changes

PEER = "192.0.2.1"
ROUTER_ID = "192.0.2.21"
REMOTE = "192.0.2.11"


def _changes(
    routes: int, vnis: int, vtep: str, with_ip: bool, first_vni: int = 1000
) -> list[AdvertChange]:
    out = []
    for i in range(routes):
        vni = first_vni + i % vnis
        rd = RouteDistinguisher(ipaddress.IPv4Address(vtep), vni)
        mac = f"02:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01"
        ip = str(ipaddress.IPv4Address("198.18.0.0") + i) if with_ip and i % 2 else None
        advert = MacAdvert(rd, vni, mac, ip, vtep, (RouteTarget(65000, vni),))
        out.append(AdvertChange(advert))
    return out


def _exabgp_setup() -> Any:
    from exabgp.bgp.message.open.capability.negotiated import Negotiated
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.environment import getenv
    from exabgp.logger import log
    from exabgp.protocol.family import AFI, SAFI

    log.init(getenv())  # ExaBGP's codec logs through what its main sets up
    negotiated = Negotiated(Neighbor())
    negotiated.families = [(AFI.l2vpn, SAFI.evpn)]
    negotiated.asn4 = True
    return negotiated


def _neighbor() -> Any:
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.routerid import RouterID
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.protocol.ip import IP

    neighbor = Neighbor()
    neighbor["peer-address"] = IP.create(PEER)
    neighbor["local-address"] = IP.create(ROUTER_ID)
    neighbor["local-as"] = neighbor["peer-as"] = ASN(65000)
    neighbor["router-id"] = RouterID(ROUTER_ID)
    return neighbor


def decode_work(impl: str, args: argparse.Namespace) -> tuple[Callable[[], int], int]:
    bodies = []
    for n in range(args.updates):  # one VNI per UPDATE: a reflector packs one attribute set
        changes = _changes(args.per_update, 1, REMOTE, args.with_ip, first_vni=1000 + n)
        [message] = encode_changes(changes, 65535).messages
        bodies.append(message[19:])
    routes = args.updates * args.per_update
    if impl == "ours":
        from evpn_agent.model import route_count
        from evpn_agent.speaker.wire_decode import decode_update

        def run() -> int:
            return sum(route_count(decode_update(body, PEER, ROUTER_ID)) for body in bodies)

        return run, routes
    if impl in ("exabgp", "exabgp-json"):
        negotiated = _exabgp_setup()
        from exabgp.bgp.message.direction import Direction
        from exabgp.bgp.message.update import Update
        from exabgp.reactor.api.response.json import JSON
        from exabgp.version import json as json_version

        from evpn_agent.speaker.decode import parse_line

        encoder = JSON(json_version)
        neighbor = _neighbor()

        def objects() -> int:
            total = 0
            for body in bodies:
                total += len(Update.unpack_message(body, Direction.IN, negotiated).nlris)
            return total

        def today() -> int:
            total = 0
            for body in bodies:
                update = Update.unpack_message(body, Direction.IN, negotiated)
                line = encoder.update(neighbor, "receive", update, None, b"", b"")
                total += len(parse_line(line, ROUTER_ID))
            return total

        return (objects if impl == "exabgp" else today), routes
    return (lambda: routes), routes


def encode_work(impl: str, args: argparse.Namespace) -> tuple[Callable[[], int], int]:
    changes = _changes(args.routes, args.vnis, ROUTER_ID, args.with_ip)
    if impl == "ours":

        def run() -> int:
            return sum(len(m) for m in encode_changes(changes, args.max_size).messages)

        return run, len(changes)
    if impl in ("exabgp", "exabgp-grouped"):
        negotiated = _exabgp_setup()
        negotiated.msg_size = args.max_size
        from exabgp.bgp.message.update import Update

        from evpn_agent.speaker import encode, grammar, launcher

        def per_route() -> int:
            total = 0
            for change in changes:
                built = launcher.build_change(grammar.parse(encode.render(change)))
                for message in Update([built.nlri], built.attributes).messages(negotiated):
                    total += len(message)
            return total

        def grouped() -> int:
            groups: dict[str, tuple[Any, list[Any]]] = {}
            for change in changes:
                built = launcher.build_change(encode.command(change))
                key = built.attributes.index() + str(built.nlri.nexthop)
                groups.setdefault(key, (built.attributes, []))[1].append(built.nlri)
            total = 0
            for attributes, nlris in groups.values():
                for message in Update(nlris, attributes).messages(negotiated):
                    total += len(message)
            return total

        return (per_route if impl == "exabgp" else grouped), len(changes)
    return (lambda: 0), len(changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["decode", "encode"])
    parser.add_argument("--impl", default="ours")
    parser.add_argument("--updates", type=int, default=60, help="decode: UPDATEs")
    parser.add_argument("--per-update", type=int, default=1700, help="decode: NLRIs each")
    parser.add_argument("--routes", type=int, default=10_000, help="encode: MACs")
    parser.add_argument("--vnis", type=int, default=100, help="encode: VNIs")
    parser.add_argument("--max-size", type=int, default=4096, help="encode: message size")
    parser.add_argument("--with-ip", action="store_true", help="every other MAC with an IP")
    args = parser.parse_args()
    choices = {
        "decode": ("ours", "exabgp", "exabgp-json", "none"),
        "encode": ("ours", "exabgp", "exabgp-grouped", "none"),
    }[args.what]
    if args.impl not in choices:
        parser.error(f"--impl for {args.what}: one of {', '.join(choices)}")
    work = decode_work if args.what == "decode" else encode_work
    started = time.perf_counter()
    run, routes = work(args.impl, args)
    setup = time.perf_counter() - started
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        json.dumps(
            {
                "what": args.what,
                "impl": args.impl,
                "routes": routes,
                "result": result,  # events decoded, or bytes encoded: a sanity figure
                "setup_s": round(setup, 4),
                "wall_s": round(wall, 4),
                "cpu_s": round(cpu, 4),
                "routes_per_s": round(routes / wall) if wall else None,
            }
        )
    )


if __name__ == "__main__":
    main()
