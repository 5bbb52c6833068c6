//! Kernel functions as probe targets (kinds `k`, `kr`, `f`, `fx`), and the kernel features each
//! kind needs.
//!
//! Contract: [`kernel_functions`] lists every function of the kernel BTF (vmlinux, then each
//! module's split BTF under `/sys/kernel/btf/`) with the position of its first
//! `struct sk_buff *` parameter; [`traceable`] says which of them the kernel lets us probe
//! (`available_filter_functions`: not inlined, not `notrace`). [`Features`] is measured, never
//! assumed from the kernel version: a kprobe PMU, kprobe-multi (fprobe), BPF trampolines (a
//! test fentry load) and raw tracepoint cookies (the `cookie` field of `bpf_raw_tp_link`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString};
use std::fs;
use std::path::Path;

use libbpf_rs::btf::types::{Func, Struct, Typedef};
use libbpf_rs::btf::Btf;
use libbpf_rs::libbpf_sys;

/// A kernel function found in BTF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// Module whose BTF declares it (`None`: vmlinux).
    pub module: Option<String>,
    /// BTF type id of the FUNC (in its module's split BTF for modules).
    pub btf_id: u32,
    pub args: usize,
    /// Position of the first `struct sk_buff *` parameter.
    pub skb: Option<usize>,
    /// The return type: bytes (0 for void) and signedness, to read the 64-bit return register
    /// as the function's C type (an `int` -1 comes back as 0xffffffff).
    pub ret: (u8, bool),
}

// BTF kinds (include/uapi/linux/btf.h).
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ENUM: u32 = 6;
const KIND_ENUM64: u32 = 19;
const KIND_STRUCT: u32 = 4;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_TYPE_TAG: u32 = 18;

/// A parsed BTF (vmlinux or a module's split BTF over it), freed on drop.
struct RawBtf(*mut libbpf_sys::btf);

impl Drop for RawBtf {
    fn drop(&mut self) {
        // SAFETY: the pointer came from btf__parse*/btf__load_vmlinux_btf and is freed once.
        unsafe { libbpf_sys::btf__free(self.0) };
    }
}

impl RawBtf {
    fn parse(path: &Path, base: Option<&RawBtf>) -> Option<RawBtf> {
        let path = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: `path` is NUL-terminated; `base` (when given) is a live BTF that outlives the
        // split one (the caller keeps vmlinux alive while modules are read).
        let ptr = unsafe {
            match base {
                Some(base) => libbpf_sys::btf__parse_split(path.as_ptr(), base.0),
                None => libbpf_sys::btf__parse(path.as_ptr(), std::ptr::null_mut()),
            }
        };
        // libbpf 1.x returns NULL (errno set) on error.
        (!ptr.is_null()).then_some(RawBtf(ptr))
    }

    fn count(&self) -> u32 {
        // SAFETY: self.0 is a live BTF.
        unsafe { libbpf_sys::btf__type_cnt(self.0) }
    }

    /// (kind, vlen, name, size-or-type) of type `id`, and a pointer to what follows it.
    fn get(&self, id: u32) -> Option<(u32, u32, &str, u32, *const libbpf_sys::btf_type)> {
        // SAFETY: btf__type_by_id bounds-checks `id` and returns NULL when out of range.
        let ty = unsafe { libbpf_sys::btf__type_by_id(self.0, id) };
        if ty.is_null() {
            return None;
        }
        // SAFETY: `ty` points to a btf_type inside the BTF data, alive as long as `self`.
        let (name_off, info, extra) =
            unsafe { ((*ty).name_off, (*ty).info, (*ty).__bindgen_anon_1.type_) };
        // SAFETY: name offsets index the BTF string section; libbpf returns a NUL-terminated
        // string or NULL.
        let name = unsafe {
            let p = libbpf_sys::btf__name_by_offset(self.0, name_off);
            if p.is_null() {
                ""
            } else {
                CStr::from_ptr(p).to_str().unwrap_or("")
            }
        };
        Some(((info >> 24) & 0x1f, info & 0xffff, name, extra, ty))
    }

    /// Skips const/volatile/restrict/typedef/type tags.
    fn resolve(&self, mut id: u32) -> Option<u32> {
        for _ in 0..32 {
            let (kind, _, _, next, _) = self.get(id)?;
            match kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = next
                }
                _ => return Some(id),
            }
        }
        None
    }

    fn is_skb_pointer(&self, id: u32) -> bool {
        let Some((KIND_PTR, _, _, pointee, _)) = self.resolve(id).and_then(|id| self.get(id))
        else {
            return false;
        };
        matches!(
            self.resolve(pointee).and_then(|id| self.get(id)),
            Some((KIND_STRUCT, _, "sk_buff", _, _))
        )
    }

    /// (bytes, signed) of a return type; (0, false) for void, (8, false) when unknown.
    fn value_type(&self, id: u32) -> (u8, bool) {
        if id == 0 {
            return (0, false);
        }
        let Some((kind, _, _, size, ty)) = self.resolve(id).and_then(|id| self.get(id)) else {
            return (8, false);
        };
        match kind {
            KIND_INT => {
                // SAFETY: an INT type is followed by one u32 (encoding, offset, bits).
                let encoding = unsafe { *ty.add(1).cast::<u32>() } >> 24;
                (size.min(8) as u8, encoding & 1 != 0)
            }
            KIND_ENUM | KIND_ENUM64 => {
                // SAFETY: `ty` is a valid btf_type (see `get`).
                let kflag = unsafe { (*ty).info } >> 31 != 0;
                (size.min(8) as u8, kflag)
            }
            _ => (8, false),
        }
    }

    /// Functions with ids in `from..count()`.
    fn functions(&self, from: u32, module: Option<&str>, out: &mut Vec<Function>) {
        for id in from..self.count() {
            let Some((KIND_FUNC, _, name, proto, _)) = self.get(id) else {
                continue;
            };
            let Some((KIND_FUNC_PROTO, vlen, _, ret_type, ty)) = self.get(proto) else {
                continue;
            };
            // SAFETY: a FUNC_PROTO is followed by `vlen` btf_param entries in the BTF data.
            let params = unsafe {
                std::slice::from_raw_parts(ty.add(1).cast::<libbpf_sys::btf_param>(), vlen as usize)
            };
            // A trailing param of type 0 marks varargs: not an argument we can read.
            let args = params.iter().filter(|p| p.type_ != 0).count();
            let skb = params
                .iter()
                .position(|p| p.type_ != 0 && self.is_skb_pointer(p.type_));
            out.push(Function {
                name: name.to_string(),
                module: module.map(str::to_string),
                btf_id: id,
                args,
                skb,
                ret: self.value_type(ret_type),
            });
        }
    }
}

/// Every function of vmlinux and module BTF. Modules whose BTF does not parse are skipped.
pub fn kernel_functions() -> anyhow::Result<Vec<Function>> {
    let dir = Path::new("/sys/kernel/btf");
    let vmlinux = RawBtf::parse(&dir.join("vmlinux"), None).ok_or_else(|| {
        anyhow::anyhow!(
            "cannot read the kernel BTF at {}",
            super::kernel::VMLINUX_BTF
        )
    })?;
    let mut out = Vec::new();
    vmlinux.functions(1, None, &mut out);
    let base_count = vmlinux.count();
    let mut modules: Vec<_> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name != "vmlinux")
                .collect()
        })
        .unwrap_or_default();
    modules.sort();
    for module in modules {
        if let Some(btf) = RawBtf::parse(&dir.join(&module), Some(&vmlinux)) {
            btf.functions(base_count, Some(&module), &mut out);
        }
    }
    Ok(out)
}

/// Function name → how many traceable symbols carry it (from `available_filter_functions`;
/// `None` when tracefs cannot be read). A name listed twice (static functions of two files)
/// cannot be probed by name without ambiguity.
pub fn traceable() -> Option<HashMap<String, u32>> {
    super::kernel::with_tracefs(|dir| {
        let text = fs::read_to_string(dir.join("available_filter_functions"))?;
        let mut names: HashMap<String, u32> = HashMap::new();
        for line in text.lines() {
            if let Some(name) = line.split_whitespace().next() {
                *names.entry(name.to_string()).or_default() += 1;
            }
        }
        Ok(names)
    })
    .ok()
}

/// What the running kernel offers for each probe kind, measured at start.
#[derive(Clone, Debug)]
pub struct Features {
    /// A kprobe PMU (CONFIG_KPROBES).
    pub kprobes: bool,
    /// kprobe-multi links (CONFIG_FPROBE, kernel 5.18+).
    pub kprobe_multi: bool,
    /// BPF trampolines: `Err` holds why a test fentry program did not load.
    pub trampolines: Result<(), String>,
    /// BPF cookies on raw tracepoint links (kernel 6.10+).
    pub raw_tp_cookies: bool,
    /// tp_btf programs may make skb dynptrs, so tracepoints capture paged data: `Err` holds
    /// why a test program did not load.
    pub paged_tracepoints: Result<(), String>,
}

/// The kprobe PMU whose presence means CONFIG_KPROBES.
pub const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

impl Features {
    /// Measures the features; `fentry_test` is a vmlinux FUNC id to try a trampoline on.
    /// `paged`: whether to test for paged reads at tracepoints (else reported as not wanted).
    pub fn detect(btf: &Btf<'_>, fentry_test: Option<u32>, paged: bool) -> Features {
        let kprobes = Path::new(KPROBE_PMU).exists();
        let kprobe_multi = kprobes && kallsyms_has(&["register_fprobe_ips", "register_fprobe"]);
        let trampolines = match fentry_test {
            Some(id) => super::kernel::fentry_loads(id).map_err(|e| e.to_string()),
            None => Err("no vmlinux function to test a trampoline on".into()),
        };
        let raw_tp_cookies = btf
            .type_by_name::<Struct<'_>>("bpf_raw_tp_link")
            .is_some_and(|s| {
                s.iter()
                    .any(|m| m.name.and_then(|n| n.to_str()) == Some("cookie"))
            });
        let paged_tracepoints = match (
            paged,
            btf.type_by_name::<Typedef<'_>>("btf_trace_netif_receive_skb"),
            btf.type_by_name::<Func<'_>>("bpf_dynptr_from_skb"),
        ) {
            (false, _, _) => Err("--no-paged".into()),
            (true, Some(tracepoint), Some(kfunc)) => super::kernel::tp_btf_dynptr_loads(
                tracepoint.type_id().into(),
                kfunc.type_id().into(),
            )
            .map_err(|e| e.to_string()),
            (true, None, _) => Err("no BTF for tracepoint netif_receive_skb".into()),
            (true, _, None) => Err("no kfunc bpf_dynptr_from_skb (kernel before 6.3)".into()),
        };
        Features {
            kprobes,
            kprobe_multi,
            trampolines,
            raw_tp_cookies,
            paged_tracepoints,
        }
    }

    /// One line for `-v`.
    pub fn describe(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        format!(
            "kprobes {}, kprobe-multi {}, trampolines {}, raw_tp cookies {}, paged data at tracepoints {}",
            yes(self.kprobes),
            yes(self.kprobe_multi),
            match &self.trampolines {
                Ok(()) => "yes".to_string(),
                Err(e) => format!("no ({e})"),
            },
            yes(self.raw_tp_cookies),
            match &self.paged_tracepoints {
                Ok(()) => "yes".to_string(),
                Err(e) => format!("no ({e})"),
            },
        )
    }
}

/// Whether /proc/kallsyms lists any of `names` as a function.
fn kallsyms_has(names: &[&str]) -> bool {
    let Ok(text) = fs::read_to_string("/proc/kallsyms") else {
        return false;
    };
    text.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(2);
        fields.next().is_some_and(|name| names.contains(&name))
    })
}

/// Functions by name (first BTF definition wins: vmlinux before modules).
pub fn by_name(functions: &[Function]) -> BTreeMap<&str, &Function> {
    let mut map = BTreeMap::new();
    for f in functions {
        map.entry(f.name.as_str()).or_insert(f);
    }
    map
}
