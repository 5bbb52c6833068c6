//! Reading values straight out of an event's MessagePack bytes, without decoding the event.
//!
//! The filter looks at a few fields per event; decoding whole sections into owned types would
//! cost more than everything else it does. These functions are the filter's shape of the one
//! reader, [`crate::model::msgpack`] (a slice that advances, as the evaluator walks), which
//! borrows strings and byte strings and checks every length against what is left, so a corrupt
//! record yields an error, never a panic or a large allocation.

use crate::model::msgpack::{Cursor, Kind, Problem};

pub use crate::model::msgpack::Value;

/// Why a value could not be read; turned into a located stream error by the caller.
pub type Corrupt = crate::model::msgpack::Error;

/// Runs `read` on a cursor over `rest`, then moves `rest` past what it consumed.
#[inline]
fn advance<'a, T>(
    rest: &mut &'a [u8],
    read: impl FnOnce(&mut Cursor<'a>) -> Result<T, Corrupt>,
) -> Result<T, Corrupt> {
    let mut cursor = Cursor::new(rest);
    let value = read(&mut cursor)?;
    *rest = cursor.rest();
    Ok(value)
}

/// Reads one value's header at the cursor; for scalars, the whole value.
#[inline]
pub fn read<'a>(rest: &mut &'a [u8]) -> Result<Value<'a>, Corrupt> {
    advance(rest, Cursor::read)
}

/// Advances the cursor past one whole value.
#[inline]
pub fn skip(rest: &mut &[u8]) -> Result<(), Corrupt> {
    advance(rest, Cursor::skip)
}

/// Within a map whose header was just read (`count` pairs at the cursor), the encoded value
/// stored under `wanted`. Leaves the cursor somewhere inside the map.
pub fn map_get<'a>(
    rest: &mut &'a [u8],
    count: u32,
    wanted: &[u8],
) -> Result<Option<&'a [u8]>, Corrupt> {
    advance(rest, |c| c.find(count, wanted))
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
    let mut cursor = Cursor::new(payload);
    let start = cursor.offset();
    let Value::Map(count) = cursor.read()? else {
        return Err(Corrupt {
            offset: start,
            problem: Problem::Expected(Kind::Map),
        });
    };
    let mut missing = wanted.len();
    for _ in 0..count {
        if missing == 0 {
            break;
        }
        let name = cursor.key()?;
        let value = cursor.value()?;
        let Some(name) = name else { continue };
        if let Some(i) = wanted.iter().position(|w| **w == *name) {
            if found[i].is_none() {
                found[i] = Some(value);
                missing -= 1;
            }
        }
    }
    Ok(())
}

/// An integer field of an encoded map (absent, nil or not an integer: `None`).
pub fn get_int(map: &[u8], field: &[u8]) -> Result<Option<i128>, Corrupt> {
    let mut cursor = Cursor::new(map);
    let Value::Map(count) = cursor.read()? else {
        return Ok(None);
    };
    let Some(value) = cursor.find(count, field)? else {
        return Ok(None);
    };
    Ok(match Cursor::new(value).read()? {
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
