#!/bin/sh
# Builds one VTEP of the lab: its underlay address, bridges and VXLAN devices, in FRR's
# layout (VXLAN devices 'nolearning', bridge port learning off, ARP/ND suppression on).
#
# One script for both ways of running lab/evpn.clab.yml, so they cannot build different
# things: containerlab binds it into the VTEP containers (entrypoint of the evpn-agent
# image, exec on the FRR VTEP) and ./lab/demo runs it in the node's namespace, each with
# the node's 'env' from the clab file:
#
#   LAB_UNDERLAY  "IFACE ADDRESS/LEN"           e.g. "eth1 192.0.2.11/24"; the VTEP address
#   LAB_BRIDGE    traditional | vlan-aware      bridge per VNI, or one VLAN-aware br0
#   LAB_VNIS      "VNI[/VLAN]=[PORT[,PORT]]..." e.g. "100/10=eth2 200/20=" (host ports)
#
# Arguments, if any, are exec'd afterwards (the container command: evpn-agent run ...).
set -eu
set -f # LAB_VNIS is split on spaces, never globbed

say() { echo "$*"; }
fail() {
    echo "vtep-setup: $*" >&2
    exit 1
}

[ -n "${LAB_UNDERLAY:-}" ] || fail "LAB_UNDERLAY is not set"
[ -n "${LAB_VNIS:-}" ] || fail "LAB_VNIS is not set"
underlay=${LAB_UNDERLAY%% *}
address=${LAB_UNDERLAY#* }
vtep=${address%/*}
mode=${LAB_BRIDGE:-traditional}
case $mode in traditional | vlan-aware) ;; *) fail "LAB_BRIDGE: $mode is not traditional or vlan-aware" ;; esac

# containerlab attaches the links after the container has started: wait for them
ports=
for item in $LAB_VNIS; do ports="$ports $(echo "${item#*=}" | tr , ' ')"; done
waited=0
for ifname in $underlay $ports; do
    while [ ! -e "/sys/class/net/$ifname" ]; do
        [ $waited -lt 600 ] || fail "interface $ifname did not appear within 60 s"
        sleep 0.1
        waited=$((waited + 1))
    done
done

ip address add "$address" dev "$underlay"
ip link set "$underlay" up

if [ "$mode" = vlan-aware ] && ! ip link add br0 type bridge vlan_filtering 1 stp_state 0 2>/dev/null; then
    say "this kernel has no bridge VLAN filtering: built one traditional bridge per VNI instead of the VLAN-aware br0"
    mode=traditional
fi

for item in $LAB_VNIS; do
    left=${item%%=*}
    vni=${left%%/*}
    vlan=
    [ "$left" = "$vni" ] || vlan=${left#*/}
    vxlan=vxlan$vni
    ip link add "$vxlan" type vxlan id "$vni" local "$vtep" dstport 4789 nolearning
    if [ "$mode" = vlan-aware ]; then
        [ -n "$vlan" ] || fail "VNI $vni has no VLAN (write $vni/VLAN=... in LAB_VNIS)"
        bridge=br0
        ip link set "$vxlan" master br0 addrgenmode none
        # the VNI's VLAN is the VXLAN port's PVID, untagged: what FRR and evpn-agent read
        bridge vlan del vid 1 dev "$vxlan"
        bridge vlan add vid "$vlan" dev "$vxlan" pvid untagged
    else
        bridge=br$vni
        ip link add "$bridge" type bridge stp_state 0
        ip link set "$vxlan" master "$bridge" addrgenmode none
    fi
    bridge link set dev "$vxlan" learning off neigh_suppress on
    for port in $(echo "${item#*=}" | tr , ' '); do
        ip link set "$port" master "$bridge"
        if [ "$mode" = vlan-aware ]; then
            bridge vlan del vid 1 dev "$port"
            bridge vlan add vid "$vlan" dev "$port" pvid untagged
        fi
        ip link set "$port" up
    done
    ip link set "$bridge" up
    ip link set "$vxlan" up
done

[ $# -eq 0 ] || exec "$@"
