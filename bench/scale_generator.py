"""The emulated VTEPs of the scale lab: their routes, MAC moves, and what every real VTEP
must hold in its kernel as a result.

One speaker (our launcher with tests/speaker_peer.py, as bench_receive's injector) peers
with both route reflectors and announces, for each emulated VTEP ``e`` (192.0.2.100+e)
and each VNI, one type 3 and ``macs`` type 2, with that VTEP's RD and next hop, as if
``e`` were a real leaf behind the reflectors. A MAC move is what a real fabric sends:
the new VTEP announces the MAC with the next mobility sequence number and the old one
withdraws it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lab.fabric import UNDERLAY, PeerScript

log = logging.getLogger("bench.scale")

ASN = 65000
FIRST_EMULATED_OCTET = 100
# Long enough for the generator's ExaBGP to have sent the announce first even when it lags
# seconds behind on a loaded machine (it packs withdraws, so they overtake announces).
WITHDRAW_AFTER_S = 5.0


def emulated_address(index: int) -> str:
    return str(UNDERLAY[FIRST_EMULATED_OCTET + index])


def mac_of(vtep: int, vni: int, index: int) -> str:
    """A unique locally administered MAC per (emulated VTEP, VNI, index)."""
    raw = bytes([0x02, vtep & 0xFF]) + vni.to_bytes(3, "big") + bytes([index & 0xFF])
    return ":".join(f"{b:02x}" for b in raw)


@dataclass
class EmulatedFabric:
    """What the emulated VTEPs announce, and where each MAC is now (the routes' truth)."""

    vteps: int
    vnis: list[int]
    macs_per_vni: int
    # (vni, mac) -> (emulated VTEP index, mobility sequence)
    where: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    seed: int = 1

    def __post_init__(self) -> None:
        if self.vteps > 150 or self.macs_per_vni > 256:
            raise ValueError("at most 150 emulated VTEPs and 256 MACs per VTEP and VNI")
        self._random = random.Random(self.seed)
        self._keys_cache: list[tuple[int, str]] | None = None
        # (vni, mac, old VTEP) -> when its withdraw is due
        self._pending: dict[tuple[int, str, int], float] = {}
        # (vni, mac, VTEP) withdrawn lately -> until when it must not be announced again,
        # and the same in the order they expire (pruned from the left)
        self._withdrawn: dict[tuple[int, str, int], float] = {}
        self._withdrawn_order: deque[tuple[float, tuple[int, str, int]]] = deque()

    @property
    def addresses(self) -> list[str]:
        return [emulated_address(e) for e in range(self.vteps)]

    def announce_vni(self, vni: int) -> list[str]:
        """Every emulated VTEP's type 3 and MACs for ``vni`` (also records the MACs)."""
        lines = []
        for e, address in enumerate(self.addresses):
            lines.append(
                f"announce evpn multicast rd {address}:{vni} ip {address} label {vni} "
                f"next-hop {address} rt {ASN}:{vni}"
            )
            for i in range(self.macs_per_vni):
                mac = mac_of(e, vni, i)
                self.where[(vni, mac)] = (e, 0)
                lines.append(self._mac_line("announce", e, vni, mac, 0))
        return lines

    def initial(self, extra_vnis: Iterable[int] = ()) -> list[str]:
        return [line for vni in [*self.vnis, *extra_vnis] for line in self.announce_vni(vni)]

    def _mac_line(self, action: str, vtep: int, vni: int, mac: str, seq: int | None) -> str:
        address = emulated_address(vtep)
        line = f"{action} evpn mac rd {address}:{vni} mac {mac} label {vni} next-hop {address}"
        if action == "announce":
            line += f" rt {ASN}:{vni}"
            if seq:
                line += f" mobility {seq}"
        return line

    def moves(self, count: int, now: float) -> list[str]:
        """Up to ``count`` MAC moves to another emulated VTEP: announces with the next mobility
        sequence number now; the old VTEP's withdraw is due ``WITHDRAW_AFTER_S`` later
        (:meth:`due_withdraws`), as a real leaf withdraws once it has seen the move. Sent
        together, the withdraws would overtake the announces (ExaBGP packs withdraws into
        one UPDATE, each announce with its own attributes into its own) and every move
        would look like a MAC going away for a while."""
        if self.vteps < 2:
            return []
        keys = self._keys()
        lines = []
        self._forget_withdrawn(now)
        for _ in range(count):
            vni, mac = keys[self._random.randrange(len(keys))]
            old, seq = self.where[(vni, mac)]
            new = (old + 1 + self._random.randrange(self.vteps - 1)) % self.vteps
            if (vni, mac, new) in self._withdrawn:
                # ExaBGP may still hold that withdraw unsent, and its adj-rib-out can send
                # an announce of the same route before it: the route is lost for good (4
                # MACs in a 10-minute soak). The agent's speaker works around it
                # (evpn_agent.speaker.compat.queue); these lines take ExaBGP's own
                # announce command. Another move instead.
                continue
            self.where[(vni, mac)] = (new, seq + 1)
            # moving back before the old route was withdrawn: that withdraw must not go
            self._pending.pop((vni, mac, new), None)
            self._pending[(vni, mac, old)] = now + WITHDRAW_AFTER_S
            lines.append(self._mac_line("announce", new, vni, mac, seq + 1))
        return lines

    def due_withdraws(self, now: float) -> list[str]:
        """The withdraws of moved MACs' old routes that are due at ``now`` (all: inf)."""
        due = [key for key, at in self._pending.items() if at <= now]
        until = now + WITHDRAW_AFTER_S
        for key in due:
            del self._pending[key]
            if until != float("inf"):
                self._withdrawn[key] = until
                self._withdrawn_order.append((until, key))
        return [self._mac_line("withdraw", vtep, vni, mac, None) for vni, mac, vtep in due]

    def _forget_withdrawn(self, now: float) -> None:
        order = self._withdrawn_order
        while order and order[0][0] <= now:
            until, key = order.popleft()
            if self._withdrawn.get(key) == until:
                del self._withdrawn[key]

    def _keys(self) -> list[tuple[int, str]]:
        """The MACs of the served VNIs (moves stay there; the VNI-add VNIs stay still)."""
        if self._keys_cache is None:
            served = set(self.vnis)
            self._keys_cache = [k for k in self.where if k[0] in served]
        return self._keys_cache

    def expected(
        self, vnis: Iterable[int], real_vteps: Iterable[str], shared: Iterable[int]
    ) -> tuple[set[tuple[int, str]], dict[tuple[int, str], str]]:
        """(flood entries {(vni, dst)}, remote MACs {(vni, mac): dst}) a VTEP serving
        ``vnis`` must hold, with ``real_vteps`` the other real VTEPs, which serve the
        ``shared`` VNIs."""
        both = set(shared)
        real = list(real_vteps)
        flood = {(vni, dst) for vni in vnis for dst in self.addresses}
        flood |= {(vni, dst) for vni in vnis if vni in both for dst in real}
        wanted = set(vnis)
        macs = {
            key: emulated_address(vtep)
            for key, (vtep, _seq) in self.where.items()
            if key[0] in wanted
        }
        return flood, macs


class Churn:
    """A thread that writes ``rate`` MAC moves per second to the generator, in batches of
    a tenth of a second, until stopped; counts what it sent and how late it fell."""

    def __init__(self, peer: PeerScript, model: EmulatedFabric, rate: float) -> None:
        self.peer, self.model, self.rate = peer, model, rate
        self.moves = 0
        self.behind_s = 0.0
        self.lock = threading.Lock()  # the model changes under it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        tick = 0.1
        next_at = self.started
        carry = 0.0
        while not self._stop.is_set():
            carry += self.rate * tick
            count, carry = int(carry), carry - int(carry)
            now = time.monotonic()
            with self.lock:
                moved = self.model.moves(count, now)
                lines = moved + self.model.due_withdraws(now)
            if lines:
                self.peer.send(*lines, timeout=30)
                self.moves += len(moved)
            next_at += tick
            late = time.monotonic() - next_at
            if late > 0:
                self.behind_s = max(self.behind_s, late)
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> dict[str, Any]:
        """Stop moving; the withdraws still pending go out at once."""
        self._stop.set()
        self._thread.join(30)
        with self.lock:
            rest = self.model.due_withdraws(float("inf"))
        if rest:
            self.peer.send(*rest, timeout=30)
        elapsed = time.monotonic() - self.started
        return {
            "moves_sent": self.moves,
            "seconds": round(elapsed, 1),
            "moves_per_s": round(self.moves / elapsed, 1) if elapsed else None,
            "max_behind_schedule_s": round(self.behind_s, 2),
        }
