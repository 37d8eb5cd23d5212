//! The serialized shape of a type, read from its `Deserialize`: field
//! names and types, nested types included, every variant of every enum.
//!
//! Snapshots record a fingerprint of their state's shape (a snapshot of
//! another shape is not used), and the schema lock
//! ([`schema::SchemaLock`](crate::schema::SchemaLock)) records each stored
//! event's shape. Both need the shape without a value of the type: the
//! tracer here plays a deserializer that answers every question serde's
//! derived code asks with a sample, writing down the questions — which are
//! the shape. Each enum is traced once per variant.
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Account { owner: String, balance: u64, tags: Vec<Tag> }
//! #[derive(serde::Deserialize)]
//! enum Tag { Plain, Limit(u64) }
//!
//! let shape = es_core::shape::of::<Account>().unwrap();
//! assert_eq!(
//!     shape.to_string(),
//!     "Account\nAccount = struct { owner: str, balance: u64, tags: [Tag] }\nTag = enum { Plain, Limit(u64) }\n"
//! );
//! ```
//!
//! What it cannot see: a type whose `Deserialize` is written by hand to
//! accept anything (`deserialize_any`: `serde_json::Value`, untagged
//! enums, `#[serde(flatten)]`) is recorded as `any`; a type that refuses
//! every sample value fails to trace ([`ShapeError`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;

mod trace;

/// The shape of one value: a primitive, a container of other shapes, or a
/// named type described in the [`Shape`]'s registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// `bool`, `u64`, `str`, ...: a primitive, by its serde name.
    Primitive(&'static str),
    /// `()`.
    Unit,
    /// An optional value.
    Option(Box<Format>),
    /// A sequence of values of one shape.
    Seq(Box<Format>),
    /// A tuple (or fixed-size array) of these shapes.
    Tuple(Vec<Format>),
    /// A map.
    Map(Box<Format>, Box<Format>),
    /// A named struct or enum, described in the registry.
    Named(&'static str),
    /// Anything (a hand-written `Deserialize` that accepts whatever comes).
    Any,
}

/// A named type's description.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Container {
    /// `struct S;`
    UnitStruct,
    /// `struct S(T);`
    NewtypeStruct(Format),
    /// `struct S(T, U);`
    TupleStruct(Vec<Format>),
    /// `struct S { a: T }`, fields in order.
    Struct(Vec<(&'static str, Format)>),
    /// `enum E { .. }`, variants in order.
    Enum(Vec<(&'static str, Variant)>),
}

/// One variant of an enum.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// `V`
    Unit,
    /// `V(T)`
    Newtype(Format),
    /// `V(T, U)`
    Tuple(Vec<Format>),
    /// `V { a: T }`
    Struct(Vec<(&'static str, Format)>),
    /// Not reached by the tracer (it should not happen).
    Unexplored,
}

/// A type's shape: its own format and every named type it contains.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape {
    /// The type's format.
    pub root: Format,
    /// The named types, by name.
    pub registry: BTreeMap<&'static str, Container>,
}

/// Why a type could not be traced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot trace the serialized shape of `{type_name}`: {message}")]
pub struct ShapeError {
    /// The type.
    pub type_name: &'static str,
    /// What its `Deserialize` said.
    pub message: String,
}

pub use trace::of;

/// A 64-bit fingerprint of `T`'s shape (FNV-1a of its rendering), or `None`
/// if it cannot be traced.
pub fn fingerprint<T: DeserializeOwned>() -> Option<u64> {
    of::<T>().ok().map(|s| s.fingerprint())
}

impl Shape {
    /// A 64-bit fingerprint of this shape's [structure](Shape::structure):
    /// FNV-1a of it, never 0 (0 stands for "no fingerprint" where one is
    /// stored). Renaming a Rust type does not change it; renaming, adding or
    /// retyping a field or a variant does.
    pub fn fingerprint(&self) -> u64 {
        crate::util::fnv1a64([self.structure().as_bytes()]).max(1)
    }

    /// What is stored, without the Rust type names serde does not store:
    /// named types written out where they are used, one field or variant a
    /// line, nested ones indented; a type inside itself is `<recursive>`.
    pub fn structure(&self) -> String {
        let mut out = String::new();
        self.write_format(&mut out, &self.root, 0, &mut Vec::new());
        out
    }

    fn write_format(&self, out: &mut String, format: &Format, depth: usize, seen: &mut Vec<&'static str>) {
        match format {
            Format::Primitive(p) => out.push_str(p),
            Format::Unit => out.push_str("()"),
            Format::Any => out.push_str("any"),
            Format::Option(inner) => {
                self.write_format(out, inner, depth, seen);
                out.push('?');
            }
            Format::Seq(inner) => {
                out.push('[');
                self.write_format(out, inner, depth, seen);
                out.push(']');
            }
            Format::Tuple(items) => self.write_tuple(out, items, depth, seen),
            Format::Map(k, v) => {
                out.push('{');
                self.write_format(out, k, depth, seen);
                out.push_str(": ");
                self.write_format(out, v, depth, seen);
                out.push('}');
            }
            Format::Named(name) => {
                if seen.contains(name) {
                    out.push_str("<recursive>");
                    return;
                }
                let Some(container) = self.registry.get(name) else {
                    out.push_str("any");
                    return;
                };
                seen.push(name);
                self.write_container(out, container, depth, seen);
                seen.pop();
            }
        }
    }

    fn write_tuple(&self, out: &mut String, items: &[Format], depth: usize, seen: &mut Vec<&'static str>) {
        out.push('(');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.write_format(out, item, depth, seen);
        }
        out.push(')');
    }

    fn write_fields(
        &self,
        out: &mut String,
        fields: &[(&'static str, Format)],
        depth: usize,
        seen: &mut Vec<&'static str>,
    ) {
        if fields.is_empty() {
            out.push_str("{}");
            return;
        }
        out.push('{');
        for (name, format) in fields {
            newline(out, depth + 1);
            out.push_str(name);
            out.push_str(": ");
            self.write_format(out, format, depth + 1, seen);
        }
        newline(out, depth);
        out.push('}');
    }

    fn write_container(&self, out: &mut String, container: &Container, depth: usize, seen: &mut Vec<&'static str>) {
        match container {
            Container::UnitStruct => out.push_str("struct"),
            Container::NewtypeStruct(inner) => {
                out.push_str("struct(");
                self.write_format(out, inner, depth, seen);
                out.push(')');
            }
            Container::TupleStruct(items) => {
                out.push_str("struct");
                self.write_tuple(out, items, depth, seen);
            }
            Container::Struct(fields) => {
                out.push_str("struct ");
                self.write_fields(out, fields, depth, seen);
            }
            Container::Enum(variants) => {
                out.push_str("enum {");
                for (name, variant) in variants {
                    newline(out, depth + 1);
                    out.push_str(name);
                    match variant {
                        Variant::Unit => {}
                        Variant::Newtype(inner) => {
                            out.push('(');
                            self.write_format(out, inner, depth + 1, seen);
                            out.push(')');
                        }
                        Variant::Tuple(items) => self.write_tuple(out, items, depth + 1, seen),
                        Variant::Struct(fields) => {
                            out.push(' ');
                            self.write_fields(out, fields, depth + 1, seen);
                        }
                        Variant::Unexplored => out.push_str("(?)"),
                    }
                }
                newline(out, depth);
                out.push('}');
            }
        }
    }
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Renders the root format, then one line per named type, sorted by name.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.root)?;
        for (name, container) in &self.registry {
            writeln!(f, "{name} = {container}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Primitive(p) => f.write_str(p),
            Format::Unit => f.write_str("()"),
            Format::Option(inner) => write!(f, "{inner}?"),
            Format::Seq(inner) => write!(f, "[{inner}]"),
            Format::Tuple(items) => write!(f, "({})", List(items)),
            Format::Map(k, v) => write!(f, "{{{k}: {v}}}"),
            Format::Named(name) => f.write_str(name),
            Format::Any => f.write_str("any"),
        }
    }
}

struct List<'a>(&'a [Format]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

struct Fields<'a>(&'a [(&'static str, Format)]);

impl fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, format)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}: {format}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Container::UnitStruct => f.write_str("struct"),
            Container::NewtypeStruct(inner) => write!(f, "struct({inner})"),
            Container::TupleStruct(items) => write!(f, "struct({})", List(items)),
            Container::Struct(fields) => write!(f, "struct {{ {} }}", Fields(fields)),
            Container::Enum(variants) => {
                f.write_str("enum { ")?;
                for (i, (name, variant)) in variants.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match variant {
                        Variant::Unit => write!(f, "{name}")?,
                        Variant::Newtype(inner) => write!(f, "{name}({inner})")?,
                        Variant::Tuple(items) => write!(f, "{name}({})", List(items))?,
                        Variant::Struct(fields) => write!(f, "{name} {{ {} }}", Fields(fields))?,
                        Variant::Unexplored => write!(f, "{name}(?)")?,
                    }
                }
                f.write_str(" }")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Node {
        label: String,
        next: Option<Box<Node>>,
        children: Vec<Node>,
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    enum Shape3 {
        A,
        B(u8),
        C(u8, bool),
        D { x: i64, y: Option<String> },
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Everything {
        n: u32,
        pair: (u8, char),
        map: HashMap<String, Vec<f64>>,
        shape: Shape3,
        shapes: Vec<Shape3>,
        id: Id,
        unit: (),
        bytes: [u8; 2],
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Id(u64);

    #[test]
    fn every_variant_and_nested_type_is_described() {
        let shape = of::<Everything>().unwrap();
        assert_eq!(
            shape.to_string(),
            "Everything\n\
             Everything = struct { n: u32, pair: (u8, char), map: {str: [f64]}, shape: Shape3, shapes: [Shape3], id: Id, unit: (), bytes: (u8, u8) }\n\
             Id = struct(u64)\n\
             Shape3 = enum { A, B(u8), C(u8, bool), D { x: i64, y: str? } }\n"
        );
    }

    #[test]
    fn recursive_types_are_described_once() {
        let shape = of::<Node>().unwrap();
        assert_eq!(
            shape.to_string(),
            "Node\nNode = struct { label: str, next: Node?, children: [Node] }\n"
        );
    }

    #[test]
    fn the_structure_writes_named_types_out_where_they_are_used() {
        let shape = of::<Node>().unwrap();
        assert_eq!(
            shape.structure(),
            "struct {\n  label: str\n  next: <recursive>?\n  children: [<recursive>]\n}"
        );
        let shape = of::<Shape3Holder>().unwrap();
        assert_eq!(
            shape.structure(),
            "struct {\n  shape: enum {\n    A\n    B(u8)\n    C(u8, bool)\n    D {\n      x: i64\n      y: str?\n    }\n  }\n  id: struct(u64)\n}"
        );
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Shape3Holder {
        shape: Shape3,
        id: Id,
    }

    #[test]
    fn renaming_a_type_keeps_the_fingerprint() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Before {
            balance: u64,
        }
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct After {
            balance: u64,
        }
        assert_eq!(fingerprint::<Before>(), fingerprint::<After>());
    }

    #[test]
    fn a_changed_field_type_changes_the_fingerprint() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct A {
            balance: u64,
        }
        mod other {
            #[derive(serde::Deserialize)]
            #[allow(dead_code)]
            pub(super) struct A {
                pub(super) balance: i64,
            }
        }
        assert_ne!(fingerprint::<A>(), fingerprint::<other::A>());
        assert_eq!(fingerprint::<A>(), fingerprint::<A>());
        assert!(fingerprint::<A>().is_some_and(|f| f != 0));
    }
}
