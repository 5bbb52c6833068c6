//! The fields the filter knows, derived from the event model's JSON Schema (the same one
//! `trail-print --json-schema` writes), so that a section or field added to the event model
//! (`lib/model/sections/`, whose list `Event` is expanded from) is filterable at once and a
//! misspelt field of a known section is caught when the expression is parsed.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// What a known field holds, as far as checking an expression needs to know.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Struct(BTreeMap<String, Kind>),
    Array(Box<Kind>),
    String,
    Integer,
    Float,
    Bool,
    Bytes,
    /// Anything the schema describes in a way this module does not classify: not type-checked.
    Other,
}

impl Kind {
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Struct(_) => "a structure",
            Kind::Array(_) => "a list",
            Kind::String => "a string",
            Kind::Integer => "an integer",
            Kind::Float => "a number",
            Kind::Bool => "a boolean",
            Kind::Bytes => "a byte string",
            Kind::Other => "a value",
        }
    }
}

/// The sections of an event and their fields.
pub fn event() -> Kind {
    let schema = schemars::schema_for!(crate::model::event::Event);
    let root = schema.as_value();
    let defs = root.get("$defs").cloned().unwrap_or(Json::Null);
    kind(root, &defs, 0)
}

fn kind(schema: &Json, defs: &Json, depth: u32) -> Kind {
    if depth > 16 {
        return Kind::Other;
    }
    if let Some(reference) = schema.get("$ref").and_then(Json::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        if name == "Bytes" {
            return Kind::Bytes;
        }
        return defs
            .get(name)
            .map_or(Kind::Other, |def| kind(def, defs, depth + 1));
    }
    // `Option<T>` is `anyOf [T, null]`; enums of strings are `oneOf`/`enum` of strings.
    for alternatives in ["anyOf", "oneOf"] {
        if let Some(list) = schema.get(alternatives).and_then(Json::as_array) {
            let kinds: Vec<Kind> = list
                .iter()
                .filter(|alt| alt.get("type").and_then(Json::as_str) != Some("null"))
                .map(|alt| kind(alt, defs, depth + 1))
                .collect();
            return match kinds.as_slice() {
                [one] => one.clone(),
                many if !many.is_empty() && many.iter().all(|k| *k == Kind::String) => Kind::String,
                _ => Kind::Other,
            };
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(list)) => list
            .iter()
            .filter_map(Json::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ if schema.get("enum").is_some() => vec!["string"],
        _ => vec![],
    };
    match types.as_slice() {
        ["object"] => Kind::Struct(
            schema
                .get("properties")
                .and_then(Json::as_object)
                .map(|props| {
                    props
                        .iter()
                        .map(|(name, field)| (name.clone(), kind(field, defs, depth + 1)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        ["array"] => Kind::Array(Box::new(
            schema
                .get("items")
                .map_or(Kind::Other, |items| kind(items, defs, depth + 1)),
        )),
        ["string"] => Kind::String,
        ["integer"] => Kind::Integer,
        ["number"] => Kind::Float,
        ["boolean"] => Kind::Bool,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_sections_and_their_field_types() {
        let Kind::Struct(sections) = event() else {
            panic!("event is a structure")
        };
        for name in crate::model::event::SECTIONS {
            assert!(sections.contains_key(*name), "section {name} missing");
        }
        let Kind::Struct(drop) = &sections["drop"] else {
            panic!("drop is a structure")
        };
        assert_eq!(drop["reason"], Kind::String);
        assert_eq!(drop["code"], Kind::Integer);
        let Kind::Struct(packet) = &sections["packet"] else {
            panic!("packet is a structure")
        };
        assert_eq!(packet["data"], Kind::Bytes);
        assert_eq!(packet["layer"], Kind::String);
        assert_eq!(sections["retval"], Kind::Integer);
        let Kind::Struct(skb) = &sections["skb"] else {
            panic!("skb is a structure")
        };
        assert_eq!(skb["vlan_tci"], Kind::Integer);
        assert_eq!(skb["cloned"], Kind::Bool);
        let Kind::Struct(stack) = &sections["stack"] else {
            panic!("stack is a structure")
        };
        assert!(
            matches!(&stack["frames"], Kind::Array(frame) if matches!(**frame, Kind::Struct(_)))
        );
        let Kind::Struct(probe) = &sections["probe"] else {
            panic!("probe is a structure")
        };
        assert_eq!(probe["kind"], Kind::String);
    }
}
