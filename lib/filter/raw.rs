//! Reading values straight out of an event's MessagePack bytes, without decoding the event.
//!
//! The filter looks at a few fields per event; decoding whole sections into owned types would
//! cost more than everything else it does. These functions walk the encoded bytes in place,
//! borrow strings and byte strings from them, and check every length against what is left, so
//! a corrupt record yields an error, never a panic or a large allocation.

use rmp::Marker;

/// One decoded value. Containers are returned as their item count with the cursor left on the
/// first item, so callers walk into them without copying.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Nil,
    Bool(bool),
    /// Every integer width, signed or not, fits in an i128: comparisons need no casts.
    Int(i128),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(u32),
    Map(u32),
    /// Extension types: the filter has no use for them, beyond skipping them.
    Ext,
}

/// Why a value could not be read; turned into a located stream error by the caller.
pub type Corrupt = &'static str;

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], Corrupt> {
    if rest.len() < n {
        return Err("a value runs past the end of the record");
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn be(rest: &mut &[u8], n: usize) -> Result<u64, Corrupt> {
    Ok(take(rest, n)?
        .iter()
        .fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

/// Reads one value's header at the cursor; for scalars, the whole value.
#[inline]
pub fn read<'a>(rest: &mut &'a [u8]) -> Result<Value<'a>, Corrupt> {
    let (&byte, tail) = rest.split_first().ok_or("the record ends inside a value")?;
    *rest = tail;
    Ok(match Marker::from_u8(byte) {
        Marker::FixPos(n) => Value::Int(n.into()),
        Marker::FixNeg(n) => Value::Int(n.into()),
        Marker::Null => Value::Nil,
        Marker::True => Value::Bool(true),
        Marker::False => Value::Bool(false),
        Marker::U8 => Value::Int(be(rest, 1)?.into()),
        Marker::U16 => Value::Int(be(rest, 2)?.into()),
        Marker::U32 => Value::Int(be(rest, 4)?.into()),
        Marker::U64 => Value::Int(be(rest, 8)?.into()),
        Marker::I8 => Value::Int((be(rest, 1)? as u8 as i8).into()),
        Marker::I16 => Value::Int((be(rest, 2)? as u16 as i16).into()),
        Marker::I32 => Value::Int((be(rest, 4)? as u32 as i32).into()),
        Marker::I64 => Value::Int((be(rest, 8)? as i64).into()),
        Marker::F32 => Value::Float(f32::from_bits(be(rest, 4)? as u32).into()),
        Marker::F64 => Value::Float(f64::from_bits(be(rest, 8)?)),
        Marker::FixStr(n) => Value::Str(take(rest, n.into())?),
        Marker::Str8 => Value::Str(sized(rest, 1)?),
        Marker::Str16 => Value::Str(sized(rest, 2)?),
        Marker::Str32 => Value::Str(sized(rest, 4)?),
        Marker::Bin8 => Value::Bin(sized(rest, 1)?),
        Marker::Bin16 => Value::Bin(sized(rest, 2)?),
        Marker::Bin32 => Value::Bin(sized(rest, 4)?),
        Marker::FixArray(n) => Value::Array(n.into()),
        Marker::Array16 => Value::Array(be(rest, 2)? as u32),
        Marker::Array32 => Value::Array(be(rest, 4)? as u32),
        Marker::FixMap(n) => Value::Map(n.into()),
        Marker::Map16 => Value::Map(be(rest, 2)? as u32),
        Marker::Map32 => Value::Map(be(rest, 4)? as u32),
        Marker::FixExt1 => ext(rest, 1)?,
        Marker::FixExt2 => ext(rest, 2)?,
        Marker::FixExt4 => ext(rest, 4)?,
        Marker::FixExt8 => ext(rest, 8)?,
        Marker::FixExt16 => ext(rest, 16)?,
        Marker::Ext8 => {
            let n = be(rest, 1)? as usize;
            ext(rest, n)?
        }
        Marker::Ext16 => {
            let n = be(rest, 2)? as usize;
            ext(rest, n)?
        }
        Marker::Ext32 => {
            let n = be(rest, 4)? as usize;
            ext(rest, n)?
        }
        Marker::Reserved => return Err("invalid MessagePack byte 0xc1"),
    })
}

fn sized<'a>(rest: &mut &'a [u8], width: usize) -> Result<&'a [u8], Corrupt> {
    let n = be(rest, width)?;
    take(rest, usize::try_from(n).map_err(|_| "length too large")?)
}

fn ext<'a>(rest: &mut &'a [u8], n: usize) -> Result<Value<'a>, Corrupt> {
    take(rest, n + 1)?;
    Ok(Value::Ext)
}

pub use crate::model::codec::skip;

/// Reads a map key, which trail writes as a string; other key types are read as values and
/// returned as `None` so that lookups skip them.
#[inline]
fn key<'a>(rest: &mut &'a [u8]) -> Result<Option<&'a [u8]>, Corrupt> {
    // Fast path: trail's keys are short strings (fixstr).
    if let Some((&marker, tail)) = rest.split_first() {
        if (0xa0..=0xbf).contains(&marker) {
            let len = usize::from(marker & 0x1f);
            if len <= tail.len() {
                *rest = &tail[len..];
                return Ok(Some(&tail[..len]));
            }
        }
    }
    match read(rest)? {
        Value::Str(s) => Ok(Some(s)),
        Value::Array(_) | Value::Map(_) => Err("map key is a container"),
        _ => Ok(None),
    }
}

/// Within a map whose header was just read (`count` pairs at the cursor), the encoded value
/// stored under `wanted`. Leaves the cursor somewhere inside the map.
pub fn map_get<'a>(
    rest: &mut &'a [u8],
    count: u32,
    wanted: &[u8],
) -> Result<Option<&'a [u8]>, Corrupt> {
    for _ in 0..count {
        let found = key(rest)? == Some(wanted);
        let start = *rest;
        skip(rest)?;
        if found {
            return Ok(Some(&start[..start.len() - rest.len()]));
        }
    }
    Ok(None)
}

/// Finds the top-level entries of `payload` named in `wanted`, storing each value's bytes in
/// the matching slot of `found` (cleared first). Stops as soon as every wanted entry is found,
/// so events are not walked further than the expression needs.
pub fn index<'a>(
    payload: &'a [u8],
    wanted: &[Box<[u8]>],
    found: &mut [Option<&'a [u8]>],
) -> Result<(), Corrupt> {
    found.iter_mut().for_each(|slot| *slot = None);
    let mut rest = payload;
    let Value::Map(count) = read(&mut rest)? else {
        return Err("record is not a map");
    };
    let mut missing = wanted.len();
    for _ in 0..count {
        if missing == 0 {
            break;
        }
        let name = key(&mut rest)?;
        let start = rest;
        skip(&mut rest)?;
        let Some(name) = name else { continue };
        if let Some(i) = wanted.iter().position(|w| **w == *name) {
            if found[i].is_none() {
                found[i] = Some(&start[..start.len() - rest.len()]);
                missing -= 1;
            }
        }
    }
    Ok(())
}

/// An integer field of an encoded map (absent, nil or not an integer: `None`).
pub fn get_int(map: &[u8], field: &[u8]) -> Result<Option<i128>, Corrupt> {
    let mut rest = map;
    let Value::Map(count) = read(&mut rest)? else {
        return Ok(None);
    };
    let Some(mut value) = map_get(&mut rest, count, field)? else {
        return Ok(None);
    };
    Ok(match read(&mut value)? {
        Value::Int(v) => Some(v),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        crate::model::codec::encode(value, &mut out);
        out
    }

    #[test]
    fn reads_every_integer_width_and_sign() {
        for v in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            -1,
            -32,
            -33,
            -129,
            -40000,
            i64::MIN,
            i64::MAX,
        ] {
            let bytes = encode(&v);
            assert_eq!(read(&mut bytes.as_slice()), Ok(Value::Int(v.into())), "{v}");
        }
        let bytes = encode(&u64::MAX);
        assert_eq!(read(&mut bytes.as_slice()), Ok(Value::Int(u64::MAX.into())));
    }

    #[test]
    fn finds_fields_and_sections() {
        let event = crate::model::event::Event {
            common: Some(crate::model::event::Common {
                pid: 7,
                comm: "curl".into(),
                ..Default::default()
            }),
            drop: Some(crate::model::event::Drop {
                reason: "NETFILTER_DROP".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let payload = encode(&event);
        let wanted: Vec<Box<[u8]>> = vec![b"drop".to_vec().into(), b"skb".to_vec().into()];
        let mut found = [None, None];
        index(&payload, &wanted, &mut found).unwrap();
        assert!(found[1].is_none());
        let mut drop = found[0].unwrap();
        let Value::Map(n) = read(&mut drop).unwrap() else {
            panic!("drop is a map")
        };
        let mut reason = map_get(&mut drop, n, b"reason").unwrap().unwrap();
        assert_eq!(read(&mut reason), Ok(Value::Str(b"NETFILTER_DROP")));
    }

    #[test]
    fn skip_steps_over_exactly_one_value_of_any_kind() {
        let values = [
            encode(
                &serde_json::json!({"a": [1, -1, -200, 70000, -70000, 1.5, null, true, "x"], "b": {"c": {}}}),
            ),
            encode(&crate::model::event::Bytes(vec![7; 300])),
            encode(&"s".repeat(40)),
            encode(&"s".repeat(300)),
            encode(&vec![0u64; 20]),
            encode(
                &(0..20)
                    .map(|i| (i.to_string(), i))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            ),
            encode(&f32::MAX),
            encode(&u64::MAX),
            encode(&i64::MIN),
        ];
        for value in &values {
            let mut bytes = [value.as_slice(), &[0xc0]].concat();
            let mut rest = bytes.as_slice();
            skip(&mut rest).unwrap();
            assert_eq!(rest, &[0xc0], "{value:02x?}");
            bytes.pop();
            assert!(
                skip(&mut &bytes[..bytes.len() - 1]).is_err(),
                "{value:02x?} truncated"
            );
        }
    }

    #[test]
    fn truncated_or_lying_records_are_errors() {
        let payload = encode(&vec!["abc"; 3]);
        for cut in 0..payload.len() {
            assert!(skip(&mut &payload[..cut]).is_err(), "cut at {cut}");
        }
        // A map32 claiming 2^32-1 pairs in a 5-byte record.
        assert!(skip(&mut &[0xdf, 0xff, 0xff, 0xff, 0xff][..]).is_err());
    }
}
