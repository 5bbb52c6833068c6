//! In-kernel packet selection for trail-capture: a pcap-filter(7) expression compiled by libpcap
//! to classic BPF ([`cbpf`]) and translated by us to an eBPF function ([`translate`]) that the
//! probe programs call before they reserve an event.
//!
//! Each expression yields two variants of `u32 filter(void *data, u32 caplen, u32 wirelen)`:
//! [`PacketFilter::l2`] for packets whose bytes start at an Ethernet header, and
//! [`PacketFilter::l3`] for packets that only have a network header yet (compiled for raw IP).
//! The probe picks one per packet. An expression that libpcap cannot compile for raw IP (`ether
//! host ...`, `vlan`, `arp`) gets an L3 variant that rejects every packet, with the reason kept
//! in [`PacketFilter::l3_note`], instead of failing the run.

pub mod cbpf;
pub mod ebpf;
pub mod meta;
pub mod translate;

use std::fmt;

pub use ebpf::Insn;
pub use translate::TranslateError;

/// Largest translated variant we hand to the verifier. The body is a loop-free DAG that the
/// verifier walks with state pruning; the limit keeps it far from the verifier's 1M-instruction
/// budget inside every probe program it is placed in, and jump offsets (16 bits) in range.
pub const MAX_INSNS: usize = 8192;

/// Which first byte the packet data starts at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Ethernet header.
    L2,
    /// IPv4 or IPv6 header.
    L3,
}

impl Layer {
    fn dlt(self) -> i32 {
        match self {
            Layer::L2 => cbpf::DLT_EN10MB,
            Layer::L3 => cbpf::DLT_RAW,
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::L2 => "Ethernet",
            Layer::L3 => "raw IP",
        })
    }
}

/// Why an expression cannot be used as a kernel filter. Each message names the expression.
#[derive(Debug)]
pub enum FilterError {
    /// libpcap refused the expression (its message).
    Syntax { expr: String, message: String },
    /// The classic program has no eBPF translation.
    Translate {
        expr: String,
        layer: Layer,
        error: TranslateError,
    },
    /// The translation is larger than [`MAX_INSNS`].
    TooLarge {
        expr: String,
        layer: Layer,
        insns: usize,
    },
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::Syntax { expr, message } => {
                write!(f, "filter expression {expr:?}: {message}")
            }
            FilterError::Translate { expr, layer, error } => {
                write!(f, "filter expression {expr:?} ({layer}): {error}")
            }
            FilterError::TooLarge { expr, layer, insns } => write!(
                f,
                "filter expression {expr:?} ({layer}) translates to {insns} eBPF instructions, \
                 more than the {MAX_INSNS} a probe program may carry; simplify it"
            ),
        }
    }
}

impl std::error::Error for FilterError {}

/// The two eBPF variants of one expression.
#[derive(Debug, Clone)]
pub struct PacketFilter {
    pub expr: String,
    pub l2: Vec<Insn>,
    pub l3: Vec<Insn>,
    /// Set when the L3 variant rejects everything: libpcap's reason.
    pub l3_note: Option<String>,
    /// Classic instruction counts, for diagnostics and the report.
    pub classic_len: (usize, usize),
}

impl PacketFilter {
    /// Compiles and translates `expr`. Fails when libpcap refuses it for Ethernet (so for
    /// everything), or when a variant cannot be translated or is too large.
    pub fn new(expr: &str) -> Result<PacketFilter, FilterError> {
        let (l2_classic, _) =
            cbpf::compile(expr, cbpf::DLT_EN10MB).map_err(|message| FilterError::Syntax {
                expr: expr.to_string(),
                message,
            })?;
        let l2 = build(expr, Layer::L2, &l2_classic)?;
        let (l3, l3_note, l3_len) = match cbpf::compile(expr, Layer::L3.dlt()) {
            Ok((classic, _)) => (build(expr, Layer::L3, &classic)?, None, classic.len()),
            Err(message) => (translate::reject_all(), Some(message), 0),
        };
        Ok(PacketFilter {
            expr: expr.to_string(),
            l2,
            l3,
            l3_note,
            classic_len: (l2_classic.len(), l3_len),
        })
    }

    pub fn variant(&self, layer: Layer) -> &[Insn] {
        match layer {
            Layer::L2 => &self.l2,
            Layer::L3 => &self.l3,
        }
    }
}

fn build(expr: &str, layer: Layer, classic: &[cbpf::Insn]) -> Result<Vec<Insn>, FilterError> {
    let insns = translate::translate(classic).map_err(|error| match error {
        TranslateError::TooLarge { insns } => FilterError::TooLarge {
            expr: expr.to_string(),
            layer,
            insns,
        },
        error => FilterError::Translate {
            expr: expr.to_string(),
            layer,
            error,
        },
    })?;
    if insns.len() > MAX_INSNS {
        return Err(FilterError::TooLarge {
            expr: expr.to_string(),
            layer,
            insns: insns.len(),
        });
    }
    Ok(insns)
}

/// Compiles `expr` for `layer` and returns libpcap's own program, the oracle of the
/// differential tests (`pcap::BpfProgram::filter` runs `pcap_offline_filter`).
pub fn libpcap_program(expr: &str, layer: Layer) -> Result<pcap::BpfProgram, String> {
    cbpf::compile(expr, layer.dlt()).map(|(_, program)| program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_layer_only_expression_rejects_at_l3() {
        let filter = PacketFilter::new("ether host 02:00:00:00:00:01").unwrap();
        assert_eq!(filter.l3, translate::reject_all());
        assert!(filter.l3_note.is_some());
        assert!(filter.l2.len() > 4);
    }

    #[test]
    fn protochain_is_refused_with_a_clear_message() {
        let err = PacketFilter::new("ip6 protochain 6").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("protochain") && text.contains("backward"),
            "{text}"
        );
    }

    #[test]
    fn syntax_errors_carry_libpcap_message() {
        let err = PacketFilter::new("tcp port").unwrap_err();
        assert!(matches!(err, FilterError::Syntax { .. }), "{err}");
        assert!(err.to_string().contains("tcp port"), "{err}");
    }

    #[test]
    fn oversized_filter_is_refused() {
        // libpcap's optimizer needs minutes for an expression this large, so the classic
        // program is made by hand: loads of the packet's first byte, then accept.
        let load = cbpf::Insn {
            code: cbpf::LD | cbpf::B | cbpf::ABS,
            jt: 0,
            jf: 0,
            k: 0,
        };
        let mut classic = vec![load; 1100];
        classic.push(cbpf::Insn {
            code: cbpf::RET,
            jt: 0,
            jf: 0,
            k: 1,
        });
        let err = match build("big", Layer::L2, &classic) {
            Ok(insns) => panic!("{} instructions accepted", insns.len()),
            Err(err) => err,
        };
        assert!(matches!(err, FilterError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("8192"), "{err}");
        assert!(build("small", Layer::L2, &classic[1000..]).is_ok());
    }
}
