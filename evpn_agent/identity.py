"""Who this VTEP is: router-id, VTEP address and stable RD numbers."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from evpn_agent.core.targets import assign_rd_indexes
from evpn_agent.model import Config, Link, VxlanDevice

log = logging.getLogger(__name__)


class IdentityError(Exception):
    pass


def resolve(cfg: Config, links: Iterable[Link]) -> tuple[str, str]:
    """(router_id, vtep_ip): from the config, else from the VXLAN devices' ``local``."""
    vtep = cfg.vtep_ip
    if vtep is None:
        locals_ = sorted(
            {
                link.local
                for link in links
                if isinstance(link, VxlanDevice) and link.local and cfg.manages(link.vni)
            }
        )
        if not locals_:
            raise IdentityError(
                f"{cfg.source}: key 'vtep-ip' is not set and no VXLAN device has a local "
                "address to take it from (create the VXLAN devices with 'local IP', or set vtep-ip)"
            )
        if len(locals_) > 1:
            raise IdentityError(
                f"{cfg.source}: key 'vtep-ip' is not set and the VXLAN devices use several "
                f"local addresses ({', '.join(locals_)}): set vtep-ip"
            )
        vtep = locals_[0]
    router_id = cfg.router_id
    if router_id is None:
        if ipaddress.ip_address(vtep).version != 4:
            raise IdentityError(
                f"{cfg.source}: key 'router-id' must be set when the VTEP address is IPv6 ({vtep})"
            )
        router_id = vtep
    return router_id, vtep


def rd_indexes(state_dir: str, vnis: Iterable[int]) -> dict[int, int]:
    """RD numbers per VNI, persisted so VNIs above 65535 keep theirs across restarts."""
    path = Path(state_dir) / "rd-index.json"
    previous: dict[int, int] = {}
    try:
        previous = {int(k): int(v) for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
    merged = {**previous, **assign_rd_indexes(vnis, previous)}
    if merged != previous:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({str(k): v for k, v in sorted(merged.items())}))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot persist RD indexes to %s: %s", path, exc)
    return merged
