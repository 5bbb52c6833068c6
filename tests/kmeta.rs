//! The meta filter compiler (lib/capture/kfilter/meta.rs) against a direct evaluation: fields resolved
//! through this machine's kernel BTF, fake `sk_buff`, `net_device` and `net` objects laid out
//! at those offsets in user memory, the compiled eBPF run by the `rbpf` interpreter with a
//! helper 113 that copies only from those objects, and every verdict compared with the same
//! predicate evaluated in Rust on the values written. Needs /sys/kernel/btf/vmlinux (readable
//! without root), not BPF.

use std::cell::RefCell;

use libbpf_rs::btf::Btf;
use trail::capture::kfilter::ebpf::{self, Insn};
use trail::capture::kfilter::meta::{self, Field, Leaf};

/// The values one test case gives the kernel objects.
#[derive(Clone, Debug)]
struct World {
    mark: u32,
    len: u32,
    pkt_type: u8,
    dev: Option<Dev>,
}

#[derive(Clone, Debug)]
struct Dev {
    name: &'static str,
    ifindex: u32,
    inum: Option<u32>,
}

fn worlds() -> Vec<World> {
    let mut out = Vec::new();
    let devs = [
        None,
        Some(Dev {
            name: "veth0",
            ifindex: 4,
            inum: Some(4026532000),
        }),
        Some(Dev {
            name: "veth01",
            ifindex: 12,
            inum: Some(4026531840),
        }),
        Some(Dev {
            name: "eth0",
            ifindex: 2,
            inum: None,
        }),
        Some(Dev {
            name: "a-very-long-nam",
            ifindex: 3,
            inum: Some(4026532000),
        }),
    ];
    for (i, dev) in devs.iter().enumerate() {
        for (mark, len) in [
            (0u32, 60u32),
            (0x10, 1500),
            (0x110, 1001),
            (0xffff_fff0, 1000),
        ] {
            out.push(World {
                mark,
                len,
                pkt_type: (i % 4) as u8,
                dev: dev.clone(),
            });
        }
    }
    out
}

type Predicate = fn(&World) -> bool;

fn cases() -> Vec<(&'static str, Predicate)> {
    vec![
        ("skb.mark == 0x10", |w| w.mark == 0x10),
        ("skb.mark != 0x10", |w| w.mark != 0x10),
        ("skb.mark & 0xff == 0x10", |w| w.mark & 0xff == 0x10),
        ("skb.mark >= 0xfffffff0", |w| w.mark >= 0xffff_fff0),
        ("skb.mark", |w| w.mark != 0),
        ("!skb.mark", |w| w.mark == 0),
        ("skb.len > 1000 && skb.len <= 1500", |w| {
            w.len > 1000 && w.len <= 1500
        }),
        ("skb.len < 100 || skb.mark == 0x110", |w| {
            w.len < 100 || w.mark == 0x110
        }),
        ("skb.pkt_type == 2", |w| w.pkt_type == 2),
        ("skb.pkt_type != 0 && !(skb.pkt_type == 3)", |w| {
            w.pkt_type != 0 && w.pkt_type != 3
        }),
        ("skb.dev", |w| w.dev.is_some()),
        ("skb.dev.name == \"veth0\"", |w| {
            w.dev.as_ref().is_some_and(|d| d.name == "veth0")
        }),
        ("skb.dev.name != \"veth0\"", |w| {
            w.dev.as_ref().is_some_and(|d| d.name != "veth0")
        }),
        ("!(skb.dev.name == \"veth0\")", |w| {
            w.dev.as_ref().is_none_or(|d| d.name != "veth0")
        }),
        ("skb.dev.name == \"a-very-long-nam\"", |w| {
            w.dev.as_ref().is_some_and(|d| d.name == "a-very-long-nam")
        }),
        ("skb.dev.name == \"\"", |_| false),
        ("skb.dev.ifindex >= 3 && skb.dev.ifindex < 10", |w| {
            w.dev.as_ref().is_some_and(|d| (3..10).contains(&d.ifindex))
        }),
        ("skb.dev.nd_net.net.ns.inum == 4026532000", |w| {
            w.dev.as_ref().is_some_and(|d| d.inum == Some(4026532000))
        }),
        (
            "skb.dev.nd_net.net.ns.inum != 4026532000 || skb.mark == 0",
            |w| {
                w.dev
                    .as_ref()
                    .is_some_and(|d| d.inum.is_some_and(|i| i != 4026532000))
                    || w.mark == 0
            },
        ),
        (
            "(skb.mark == 0x10 || skb.mark == 0x110) && skb.dev.name == \"veth01\"",
            |w| {
                (w.mark == 0x10 || w.mark == 0x110)
                    && w.dev.as_ref().is_some_and(|d| d.name == "veth01")
            },
        ),
    ]
}

thread_local! {
    /// Address ranges helper 113 may copy from: the fake kernel objects of the current run.
    static READABLE: RefCell<Vec<(u64, u64)>> = const { RefCell::new(Vec::new()) };
}

fn probe_read_kernel(dst: u64, size: u64, src: u64, _: u64, _: u64) -> u64 {
    let inside = READABLE.with(|r| {
        r.borrow()
            .iter()
            .any(|&(start, len)| src >= start && src.saturating_add(size) <= start + len)
    });
    if !inside || size > 64 {
        return (-14i64) as u64; // -EFAULT, as for an unmapped kernel address
    }
    // SAFETY: [src, src + size) lies inside one of the buffers registered in READABLE, alive for
    // the run; dst is a stack slot of rbpf's 512-byte stack the compiled code passes, with room
    // for `size` (<= 64) bytes (the meta compiler's string buffer is 64 bytes).
    unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, size as usize) };
    0
}

/// Writes `value` into `buf` where `field`'s leaf lies (the last object of its path).
fn put(buf: &mut [u8], field: &Field, value: u64) {
    let at = field.offset as usize;
    match field.leaf {
        Leaf::Int { size } => {
            buf[at..at + size as usize].copy_from_slice(&value.to_le_bytes()[..size as usize])
        }
        Leaf::Bits { bit, bits } => {
            let bytes = (bit + bits).div_ceil(8) as usize;
            let mut word = [0u8; 8];
            word[..bytes].copy_from_slice(&buf[at..at + bytes]);
            let mut w = u64::from_le_bytes(word);
            let mask = ((1u64 << bits) - 1) << bit;
            w = (w & !mask) | ((value << bit) & mask);
            buf[at..at + bytes].copy_from_slice(&w.to_le_bytes()[..bytes]);
        }
        Leaf::Chars { .. } => panic!("{field:?}: strings are written by put_str"),
    }
}

fn put_str(buf: &mut [u8], field: &Field, text: &str) {
    let Leaf::Chars { len } = field.leaf else {
        panic!("{field:?} is not a char array")
    };
    let at = field.offset as usize;
    // Garbage after the NUL, as a reused kernel buffer may hold: the compare must stop at it.
    buf[at..at + len as usize].fill(b'#');
    buf[at..at + text.len()].copy_from_slice(text.as_bytes());
    if text.len() < len as usize {
        buf[at + text.len()] = 0;
    }
}

fn field(btf: &Btf<'_>, path: &str) -> Field {
    let parts: Vec<String> = path.split('.').map(String::from).collect();
    meta::resolve(btf, &parts).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run(body: &[Insn], skb: &[u8], readable: Vec<(u64, u64)>) -> u64 {
    const LDX_DW: u8 = 0x79;
    let mut insns = vec![Insn::new(LDX_DW, ebpf::R1, ebpf::R1, 0, 0)];
    insns.extend_from_slice(body);
    let program = ebpf::to_bytes(&insns);
    let mut vm = rbpf::EbpfVmMbuff::new(Some(&program)).expect("rbpf takes the program");
    vm.register_helper(ebpf::HELPER_PROBE_READ_KERNEL as u32, probe_read_kernel)
        .unwrap();
    READABLE.with(|r| *r.borrow_mut() = readable);
    let meta_buf = (skb.as_ptr() as u64).to_le_bytes();
    vm.execute_program(&[], &meta_buf).expect("program runs")
}

#[test]
fn meta_filters_agree_with_direct_evaluation() {
    let btf = Btf::from_vmlinux().expect("kernel BTF at /sys/kernel/btf/vmlinux");
    let (mark, len, pkt_type) = (
        field(&btf, "skb.mark"),
        field(&btf, "skb.len"),
        field(&btf, "skb.pkt_type"),
    );
    assert!(
        matches!(pkt_type.leaf, Leaf::Bits { bits: 3, .. }),
        "{pkt_type:?}"
    );
    let dev = field(&btf, "skb.dev");
    let name = field(&btf, "skb.dev.name");
    let ifindex = field(&btf, "skb.dev.ifindex");
    let inum = field(&btf, "skb.dev.nd_net.net.ns.inum");
    assert_eq!(name.hops.len(), 1);
    assert_eq!(inum.hops.len(), 2, "{inum:?}");

    let mut checks = 0;
    let mut accepted = 0;
    let compiled: Vec<(&str, Predicate, Vec<Insn>)> = cases()
        .into_iter()
        .map(|(text, pred)| {
            (
                text,
                pred,
                meta::build(&btf, text).unwrap_or_else(|e| panic!("{e}")),
            )
        })
        .collect();
    for world in worlds() {
        let mut skb = vec![0u8; 4096];
        let mut net_device = vec![0u8; 8192];
        let mut net = vec![0u8; 8192];
        put(&mut skb, &mark, u64::from(world.mark));
        put(&mut skb, &len, u64::from(world.len));
        put(&mut skb, &pkt_type, u64::from(world.pkt_type));
        if let Some(d) = &world.dev {
            put(&mut skb, &dev, net_device.as_ptr() as u64);
            put_str(&mut net_device, &name, d.name);
            put(&mut net_device, &ifindex, u64::from(d.ifindex));
            let net_ptr = if d.inum.is_some() {
                net.as_ptr() as u64
            } else {
                0
            };
            net_device[inum.hops[1] as usize..][..8].copy_from_slice(&net_ptr.to_le_bytes());
            if let Some(i) = d.inum {
                put(&mut net, &inum, u64::from(i));
            }
        }
        let readable = vec![
            (skb.as_ptr() as u64, skb.len() as u64),
            (net_device.as_ptr() as u64, net_device.len() as u64),
            (net.as_ptr() as u64, net.len() as u64),
        ];
        for (text, pred, body) in &compiled {
            let got = run(body, &skb, readable.clone());
            let want = pred(&world);
            assert_eq!(got != 0, want, "{text} on {world:?}");
            assert!(got <= 1);
            checks += 1;
            accepted += usize::from(want);
        }
    }
    // Both verdicts occur: the cases discriminate.
    assert!(
        accepted > checks / 10 && accepted < checks * 9 / 10,
        "{accepted} of {checks}"
    );
}

#[test]
fn unknown_fields_are_named_with_close_matches() {
    let btf = Btf::from_vmlinux().expect("kernel BTF");
    let err = meta::build(&btf, "skb.mrak == 1").unwrap_err().to_string();
    assert!(
        err.contains("\"mrak\"") && err.contains("struct sk_buff") && err.contains("mark"),
        "{err}"
    );
    let err = meta::build(&btf, "skb.dev.nmae == \"x\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("struct net_device") && err.contains("name"),
        "{err}"
    );
    let err = meta::build(&btf, "skb.mark.x == 1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a struct"), "{err}");
    let err = meta::build(&btf, "sk.mark == 1").unwrap_err().to_string();
    assert!(err.contains("skb."), "{err}");
    let err = meta::build(&btf, "skb.dev.name == \"far-too-long-for-ifnamsiz\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 16"), "{err}");
    let err = meta::build(&btf, "skb.dev.name > \"a\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("== or !="), "{err}");
    let err = meta::build(&btf, "skb.dev == \"a\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a string"), "{err}");
}
