//! The address plan (docs/design.md): node prefix /L → pod range /(L+16) made by
//! appending the 16-bit subnet id → one pod slot `k` that gives the address
//! `range base | k` in every range, so a pod has the same interface id in
//! each of its node's prefixes.
//!
//! All arithmetic is on u128 so every allowed L (0..=104, slot spaces of 8
//! to 112 bits) is exact; nothing here depends on the default /80.

use ipnet::Ipv6Net;
use std::fmt;
use std::net::Ipv6Addr;

/// Bits the subnet id adds to the node prefix.
pub const SUBNET_ID_BITS: u8 = 16;
/// Longest allowed pod range: leaves at least 8 bits (256 slots) for pods.
pub const MAX_POD_RANGE_LEN: u8 = 120;
/// Longest allowed node prefix.
pub const MAX_NODE_LEN: u8 = MAX_POD_RANGE_LEN - SUBNET_ID_BITS;
/// Node prefix length when only `fromInterface` entries are configured.
pub const DEFAULT_NODE_LEN: u8 = 80;

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

fn bits(a: Ipv6Addr) -> u128 {
    u128::from(a)
}

/// The 16-bit subnet id that selects the pod range inside a node prefix.
/// 0 is the node prefix's own first /(L+16); 0x64 is the NAT64 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetId(u16);

impl SubnetId {
    pub const DEFAULT: SubnetId = SubnetId(1);
    pub const NAT64: u16 = 0x64;
    pub const EXPECTED: &'static str =
        "an integer 1..=65535 other than 100 (0x64, the NAT64 range)";

    pub fn new(v: u64) -> Result<SubnetId, &'static str> {
        match u16::try_from(v) {
            Ok(0) | Err(_) => Err(Self::EXPECTED),
            Ok(Self::NAT64) => Err(Self::EXPECTED),
            Ok(v) => Ok(SubnetId(v)),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// A node's prefix: network bits only, length at most [`MAX_NODE_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePrefix(Ipv6Net);

impl NodePrefix {
    /// A literal prefix: host bits must be clear (a typo'd prefix is an
    /// error, not silently truncated).
    pub fn new(net: Ipv6Net) -> Result<NodePrefix, String> {
        if net.prefix_len() > MAX_NODE_LEN {
            return Err(format!(
                "a node prefix of length at most {MAX_NODE_LEN} (the pod range /(L+16) must be at most /{MAX_POD_RANGE_LEN})"
            ));
        }
        let b = bits(net.addr());
        if b & !mask(net.prefix_len()) != 0 {
            // The set bits are usually the node's own (C:0:3::/64 written for
            // node 3's C:0:3::/80): propose the length that keeps them, at a
            // 16-bit boundary. The truncation (C::/64) would make node 3 hand
            // out node 1's C:0:1::/80, so it is proposed only as a last resort.
            let keep = (128 - b.trailing_zeros() as u8).div_ceil(16) * 16;
            let meant = match Ipv6Net::new(net.addr(), keep) {
                Ok(n) if keep <= MAX_NODE_LEN => n,
                _ => net.trunc(),
            };
            return Err(format!(
                "a prefix without host bits set (did you mean {meant}?)"
            ));
        }
        Ok(NodePrefix(net))
    }

    /// The node prefix of length `len` taken from an interface address
    /// `addr/plen`: a shorter interface prefix is cut to its first /len, a
    /// longer one cannot hold a /len and is refused.
    pub fn from_interface(addr: Ipv6Addr, plen: u8, len: u8) -> Result<NodePrefix, String> {
        if plen > len {
            return Err(format!(
                "an interface prefix of length at most {len} (found {addr}/{plen}, longer than the node prefix length)"
            ));
        }
        let base = bits(addr) & mask(plen);
        let net = Ipv6Net::new(Ipv6Addr::from(base), len).map_err(|e| e.to_string())?;
        NodePrefix::new(net)
    }

    pub fn net(&self) -> Ipv6Net {
        self.0
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// A ULA /80 whose bits 64..80 are zero is the cluster's virtual-IP
    /// range `C:0::/80`, never a node's.
    pub fn is_reserved_vip(&self) -> bool {
        let a = bits(self.0.addr());
        let ula = (a >> 121) == (0xfc >> 1);
        ula && self.prefix_len() == 80 && (a >> 48) & 0xffff == 0
    }

    /// The pod range: the subnet id placed right after the node prefix.
    pub fn pod_range(&self, id: SubnetId) -> PodRange {
        let len = self.prefix_len() + SUBNET_ID_BITS;
        let base = bits(self.0.addr()) | (u128::from(id.get()) << (128 - u32::from(len)));
        PodRange(Ipv6Net::new(Ipv6Addr::from(base), len).expect("len <= 120"))
    }
}

impl fmt::Display for NodePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A pod range /(L+16); its low `128-(L+16)` bits are the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRange(Ipv6Net);

impl PodRange {
    pub fn net(&self) -> Ipv6Net {
        self.0
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    pub fn space(&self) -> SlotSpace {
        SlotSpace {
            host_bits: 128 - self.prefix_len(),
        }
    }

    pub fn address(&self, slot: Slot) -> Ipv6Addr {
        debug_assert!(slot.0 <= self.space().last().0);
        Ipv6Addr::from(bits(self.0.addr()) | slot.0)
    }

    /// The address with the range's length, as a result's `ips[].address`.
    pub fn address_net(&self, slot: Slot) -> Ipv6Net {
        Ipv6Net::new(self.address(slot), self.prefix_len()).expect("len valid")
    }

    pub fn gateway(&self) -> Ipv6Addr {
        self.address(Slot::GATEWAY)
    }

    /// The slot of `addr` if it lies in this range.
    pub fn slot_of(&self, addr: Ipv6Addr) -> Option<Slot> {
        self.0
            .contains(&addr)
            .then(|| Slot(bits(addr) & !mask(self.prefix_len())))
    }

    pub fn overlaps(&self, other: &PodRange) -> bool {
        self.0.contains(&other.0) || other.0.contains(&self.0)
    }
}

impl fmt::Display for PodRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A pod's index inside every pod range of its node (the interface id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(pub u128);

impl Slot {
    pub const GATEWAY: Slot = Slot(0x1);
    /// 0x0–0xf are reserved (0x1 the gateway); pods start here.
    pub const FIRST_POD: Slot = Slot(0x10);

    /// The store's file name: lower-case hex without `0x` (`10`, `ffffffff`).
    pub fn file_name(self) -> String {
        format!("{:x}", self.0)
    }

    /// Inverse of [`Slot::file_name`]; only the canonical spelling is
    /// accepted so one slot has exactly one file.
    pub fn from_file_name(s: &str) -> Option<Slot> {
        let canonical = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && (s == "0" || !s.starts_with('0'));
        if !canonical {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(Slot)
    }

    /// Parse `0x10`-style text (records, cursor); `0x` optional.
    pub fn parse_hex(s: &str) -> Option<Slot> {
        let s = s.trim();
        let h = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        if h.is_empty() || h.len() > 32 {
            return None;
        }
        u128::from_str_radix(h, 16).ok().map(Slot)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// The allocatable slots of a pod range: `0x10 ..= 2^host_bits - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSpace {
    host_bits: u8,
}

impl SlotSpace {
    pub fn with_host_bits(host_bits: u8) -> SlotSpace {
        assert!((128 - MAX_POD_RANGE_LEN..=128 - SUBNET_ID_BITS).contains(&host_bits));
        SlotSpace { host_bits }
    }

    pub fn host_bits(&self) -> u8 {
        self.host_bits
    }

    pub fn first(&self) -> Slot {
        Slot::FIRST_POD
    }

    pub fn last(&self) -> Slot {
        Slot(u128::MAX >> (128 - u32::from(self.host_bits)))
    }

    /// Number of pod slots (never 0: host_bits >= 8).
    pub fn capacity(&self) -> u128 {
        self.last().0 - self.first().0 + 1
    }

    pub fn contains(&self, s: Slot) -> bool {
        s >= self.first() && s <= self.last()
    }

    /// The slot after `s`, wrapping from the top back to the first pod slot.
    pub fn next(&self, s: Slot) -> Slot {
        if s >= self.last() || s < self.first() {
            self.first()
        } else {
            Slot(s.0 + 1)
        }
    }
}

/// The resolved plan of one network on this node: its pod ranges in
/// config order, all of one length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPlan {
    ranges: Vec<PodRange>,
}

/// Why a set of node prefixes does not form a plan; the index is the
/// position in `ipam.prefixes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    Empty,
    LengthMismatch { index: usize, len: u8, expected: u8 },
    Reserved { index: usize },
    Overlap { index: usize, other: usize },
}

impl AddressPlan {
    pub fn new(nodes: &[NodePrefix], id: SubnetId) -> Result<AddressPlan, PlanError> {
        let first = nodes.first().ok_or(PlanError::Empty)?;
        let mut ranges: Vec<PodRange> = Vec::with_capacity(nodes.len());
        for (index, n) in nodes.iter().enumerate() {
            if n.prefix_len() != first.prefix_len() {
                return Err(PlanError::LengthMismatch {
                    index,
                    len: n.prefix_len(),
                    expected: first.prefix_len(),
                });
            }
            if n.is_reserved_vip() {
                return Err(PlanError::Reserved { index });
            }
            let r = n.pod_range(id);
            if let Some(other) = ranges.iter().position(|o| o.overlaps(&r)) {
                return Err(PlanError::Overlap { index, other });
            }
            ranges.push(r);
        }
        Ok(AddressPlan { ranges })
    }

    pub fn ranges(&self) -> &[PodRange] {
        &self.ranges
    }

    pub fn space(&self) -> SlotSpace {
        self.ranges[0].space()
    }

    /// One address per range for `slot`, in config order.
    pub fn addresses(&self, slot: Slot) -> Vec<Ipv6Net> {
        self.ranges.iter().map(|r| r.address_net(slot)).collect()
    }

    /// The slot of an address in any of the ranges.
    pub fn slot_of(&self, addr: Ipv6Addr) -> Option<Slot> {
        self.ranges.iter().find_map(|r| r.slot_of(addr))
    }

    pub fn describe(&self) -> String {
        self.ranges
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod hint_tests {
    use super::*;

    #[test]
    fn host_bits_hint_keeps_the_node_number() {
        let e = NodePrefix::new("fd8c:1f0a:77e3:0:3::/64".parse().unwrap()).unwrap_err();
        assert!(e.contains("did you mean fd8c:1f0a:77e3:0:3::/80?"), "{e}");
        let e = NodePrefix::new("2001:db8::1/80".parse().unwrap()).unwrap_err();
        assert!(e.contains("did you mean 2001:db8::/80?"), "{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn node(s: &str) -> NodePrefix {
        NodePrefix::new(net(s)).unwrap()
    }

    #[test]
    fn default_plan_matches_design() {
        let n = node("fd8c:1f0a:77e3:0:1::/80");
        let r = n.pod_range(SubnetId::DEFAULT);
        assert_eq!(r.net(), net("fd8c:1f0a:77e3:0:1:1::/96"));
        assert_eq!(
            r.gateway(),
            "fd8c:1f0a:77e3:0:1:1::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            r.address_net(Slot::FIRST_POD),
            net("fd8c:1f0a:77e3:0:1:1::10/96")
        );
        assert_eq!(r.space().host_bits(), 32);
        assert_eq!(r.space().last(), Slot(0xffff_ffff));
        assert_eq!(r.space().capacity(), 0xffff_ffff - 0x10 + 1);
        // GUA /80 cut from a /64 (docs/design.md: G:0:1::/96).
        let g = NodePrefix::from_interface("2001:db8:7:12::5".parse().unwrap(), 64, 80).unwrap();
        assert_eq!(g.net(), net("2001:db8:7:12::/80"));
        assert_eq!(
            g.pod_range(SubnetId::DEFAULT).net(),
            net("2001:db8:7:12:0:1::/96")
        );
    }

    #[test]
    fn subnet_id_placement_for_several_lengths() {
        // L=64: id lands in bits 64..80.
        let r = node("fd00:1:2:3::/64").pod_range(SubnetId::new(0xbeef).unwrap());
        assert_eq!(r.net(), net("fd00:1:2:3:beef::/80"));
        assert_eq!(r.space().host_bits(), 48);
        assert_eq!(r.space().last(), Slot((1 << 48) - 1));
        // L=104: the shortest allowed range, /120, 8 slot bits.
        let r = node("fd00::aa:bb00:0/104").pod_range(SubnetId::new(2).unwrap());
        assert_eq!(r.net(), net("fd00::aa:bb00:200/120"));
        assert_eq!(r.space().capacity(), 0x100 - 0x10);
        assert_eq!(
            r.address(Slot(0xff)),
            "fd00::aa:bb00:2ff".parse::<Ipv6Addr>().unwrap()
        );
        // L=48 and L=16: slot spaces wider than 64 bits.
        let r = node("2001:db8:1::/48").pod_range(SubnetId::new(7).unwrap());
        assert_eq!(r.net(), net("2001:db8:1:7::/64"));
        assert_eq!(r.space().last(), Slot(u128::from(u64::MAX)));
        let r = node("fd00::/16").pod_range(SubnetId::new(0xffff).unwrap());
        assert_eq!(r.net(), net("fd00:ffff::/32"));
        assert_eq!(r.space().host_bits(), 96);
        let k = Slot((1u128 << 95) | 0x10);
        assert_eq!(r.slot_of(r.address(k)), Some(k));
        // L=0: the id is the top 16 bits.
        let r = node("::/0").pod_range(SubnetId::new(0xfd00).unwrap());
        assert_eq!(r.net(), net("fd00::/16"));
        assert_eq!(r.space().last(), Slot(u128::MAX >> 16));
    }

    #[test]
    fn subnet_id_limits() {
        assert!(SubnetId::new(0).is_err());
        assert!(SubnetId::new(100).is_err());
        assert!(SubnetId::new(65536).is_err());
        assert_eq!(SubnetId::new(65535).unwrap().get(), 0xffff);
        assert_eq!(SubnetId::new(99).unwrap().get(), 99);
    }

    #[test]
    fn node_prefix_rules() {
        assert!(NodePrefix::new(net("fd00::1:0:0:0/80")).is_ok());
        let e = NodePrefix::new(net("fd00::1:0:0:1/80")).unwrap_err();
        assert!(e.contains("fd00::1:0:0:0/80"), "{e}");
        assert!(NodePrefix::new(net("fd00::/104")).is_ok());
        assert!(NodePrefix::new(net("fd00::/105")).is_err());
        // Interface prefix: shorter is cut, longer refused, equal kept.
        let n = NodePrefix::from_interface("fd00:0:0:5:1:2:3:4".parse().unwrap(), 64, 96).unwrap();
        assert_eq!(n.net(), net("fd00:0:0:5::/96"));
        let n = NodePrefix::from_interface("fd00:0:0:5:1:2:3:4".parse().unwrap(), 80, 80).unwrap();
        assert_eq!(n.net(), net("fd00:0:0:5:1::/80"));
        assert!(NodePrefix::from_interface("fd00::1".parse().unwrap(), 96, 80).is_err());
    }

    #[test]
    fn reserved_vip_range() {
        assert!(node("fd8c:1f0a:77e3::/80").is_reserved_vip());
        assert!(node("fc00:1:2:3::/80").is_reserved_vip());
        assert!(!node("fd8c:1f0a:77e3:0:1::/80").is_reserved_vip());
        // Only ULA, and only /80.
        assert!(!node("2001:db8:7:12::/80").is_reserved_vip());
        assert!(!node("fd8c:1f0a:77e3::/64").is_reserved_vip());
        let e = AddressPlan::new(&[node("fd8c:1f0a:77e3::/80")], SubnetId::DEFAULT);
        assert_eq!(e, Err(PlanError::Reserved { index: 0 }));
    }

    #[test]
    fn plan_checks_length_and_overlap() {
        let id = SubnetId::DEFAULT;
        let ok = AddressPlan::new(
            &[node("fd8c:1f0a:77e3:0:1::/80"), node("2001:db8:7:12::/80")],
            id,
        )
        .unwrap();
        let k = Slot(0x2a);
        assert_eq!(
            ok.addresses(k),
            vec![
                net("fd8c:1f0a:77e3:0:1:1::2a/96"),
                net("2001:db8:7:12:0:1::2a/96")
            ]
        );
        assert_eq!(
            ok.slot_of("2001:db8:7:12:0:1::2a".parse().unwrap()),
            Some(k)
        );
        assert_eq!(ok.slot_of("2001:db8:7:12:0:2::2a".parse().unwrap()), None);
        assert_eq!(
            AddressPlan::new(&[node("fd00::1:0:0:0/80"), node("fd00::/64")], id),
            Err(PlanError::LengthMismatch {
                index: 1,
                len: 64,
                expected: 80
            })
        );
        assert_eq!(
            AddressPlan::new(&[node("fd00::1:0:0:0/80"), node("fd00::1:0:0:0/80")], id),
            Err(PlanError::Overlap { index: 1, other: 0 })
        );
        assert_eq!(AddressPlan::new(&[], id), Err(PlanError::Empty));
        let r1 = node("fd00::/64").pod_range(id);
        let r2 = PodRange(net("fd00:0:0:0:1::/80"));
        assert!(r1.overlaps(&r2) && r2.overlaps(&r1));
        assert!(!r1.overlaps(&node("fd00:0:0:1::/64").pod_range(id)));
    }

    #[test]
    fn slot_space_walk_and_names() {
        let s = SlotSpace::with_host_bits(8);
        assert_eq!(s.first(), Slot(0x10));
        assert_eq!(s.last(), Slot(0xff));
        assert_eq!(s.next(Slot(0x10)), Slot(0x11));
        assert_eq!(s.next(Slot(0xff)), Slot(0x10));
        assert_eq!(s.next(Slot(0x3)), Slot(0x10));
        assert!(!s.contains(Slot(0xf)) && !s.contains(Slot(0x100)));
        let wide = SlotSpace::with_host_bits(112);
        assert_eq!(wide.next(Slot(u128::MAX >> 16)), Slot(0x10));
        assert_eq!(wide.capacity(), (u128::MAX >> 16) - 0xf);
        assert_eq!(Slot(0x1a).file_name(), "1a");
        assert_eq!(Slot(0xffff_ffff).file_name(), "ffffffff");
        assert_eq!(Slot::from_file_name("1a"), Some(Slot(0x1a)));
        for bad in ["", "01a", "1A", "0x10", "g", "../x", &"f".repeat(33)] {
            assert_eq!(Slot::from_file_name(bad), None, "{bad}");
        }
        assert_eq!(Slot(0x10).to_string(), "0x10");
        assert_eq!(Slot::parse_hex("0x10\n"), Some(Slot(0x10)));
        assert_eq!(Slot::parse_hex("ff"), Some(Slot(0xff)));
        assert_eq!(Slot::parse_hex("0x"), None);
        assert_eq!(Slot::parse_hex("zz"), None);
    }
}
